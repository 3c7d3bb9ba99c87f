"""Axial coding: from first-failure notes to a named, defined taxonomy of failure modes, and how
often each mode happens.

- clustering: the notes to group (`failure_notes`), offline clustering (TF-IDF/LSA or
  embeddings, k-means with k chosen by stability), LLM clustering (batched, merged, structured,
  cached), manual runs; every run stored with its method, parameters and proposals.
- taxonomy: review of a run's proposals (edit, merge, split, move notes, discard, accept) and of
  the accepted modes (rename, redefine, merge, split, move, assign, retire), each change kept in
  the taxonomy history; export as Markdown and CSV.
- prevalence: per-trace tables under filters, Pareto table with Wilson intervals, breakdowns by
  dimension value and tag, first-failure transitions, round comparison with Newcombe intervals.
- charts: the Altair charts of those tables.
"""

from evalboard.axial.clustering import (
    ClusterRun,
    NoteRef,
    OfflineClustering,
    Proposal,
    cluster_offline,
    cluster_with_llm,
    failure_notes,
    get_run,
    list_runs,
    manual_run,
    run_llm,
    run_offline,
)
from evalboard.axial.taxonomy import (
    accept_proposals,
    add_proposal,
    assign_mode,
    create_mode,
    discard_proposal,
    edit_proposal,
    export_csv,
    export_markdown,
    history,
    merge_modes,
    merge_proposals,
    mode_assignments,
    move_assignments,
    move_notes,
    retire_mode,
    split_mode,
    split_proposal,
    taxonomy_table,
    update_mode,
)

__all__ = [
    "ClusterRun", "NoteRef", "OfflineClustering", "Proposal", "accept_proposals", "add_proposal",
    "assign_mode", "cluster_offline", "cluster_with_llm", "create_mode", "discard_proposal",
    "edit_proposal", "export_csv", "export_markdown", "failure_notes", "get_run", "history",
    "list_runs", "manual_run", "merge_modes", "merge_proposals", "mode_assignments",
    "move_assignments", "move_notes", "retire_mode", "run_llm", "run_offline", "split_mode",
    "split_proposal", "taxonomy_table", "update_mode",
]

"""Production prevalence: validated judges on production samples, with honest intervals.

- `runs`: production runs (a sample, its window, the judge versions with their frozen test
  results), run directly with concurrent calls, resumable at any point;
- `batch`: the same through the provider's Batch API (submit, poll, ingest);
- `counts`: the production verdict ledger and the per day x facet counts the dashboard reads;
- `estimates`: raw rate (Wilson) and corrected prevalence (Rogan-Gladen with the interval of
  `evalboard.stats.corrected_prevalence`) per mode, over a window, per day or week, per facet
  value, two windows compared, and the flagged traces; `METHOD_NOTE` explains the method;
- `charts`: the dashboard's Altair charts.

No Streamlit and no LLM client here: functions that call an LLM take the client as their first
argument (pages pass `ui.llm.llm_client(store)`, the CLI builds one from the settings).
"""

from evalboard.production.batch import answer_from_text, poll_batches, run_batch, submit_batches
from evalboard.production.counts import FACET_ALL, facet_pairs, rebuild_counts
from evalboard.production.estimates import (
    LOW_N,
    METHOD_NOTE,
    PERIODS,
    ModeEstimate,
    breakdown,
    compare_windows,
    count_flagged,
    data_span,
    estimate,
    estimates_table,
    facet_label,
    facets,
    flagged_traces,
    run_estimates,
    run_summary,
    trend,
    window_estimates,
)
from evalboard.production.runs import (
    BATCH_SIZE,
    EXECUTIONS,
    JudgeChoice,
    ProductionError,
    ProductionRun,
    RunJudge,
    RunOutcome,
    RunProgress,
    Sample,
    create_run,
    draw_sample,
    finish_run,
    get_run,
    judge_choice,
    judge_choices,
    judge_run_ids,
    latest_run,
    list_runs,
    production_judges,
    record_run,
    resolve_judges,
    run_counts,
    run_direct,
    sync_run,
)

__all__ = [
    "BATCH_SIZE", "EXECUTIONS", "FACET_ALL", "LOW_N", "METHOD_NOTE", "PERIODS", "JudgeChoice", "ModeEstimate",
    "ProductionError", "ProductionRun", "RunJudge", "RunOutcome", "RunProgress", "Sample", "answer_from_text",
    "breakdown", "compare_windows", "count_flagged", "create_run", "data_span", "draw_sample", "estimate",
    "estimates_table", "facet_label", "facet_pairs", "facets", "finish_run", "flagged_traces", "get_run",
    "judge_choice", "judge_choices", "judge_run_ids", "latest_run", "list_runs", "poll_batches", "production_judges",
    "rebuild_counts", "record_run", "resolve_judges", "run_batch", "run_counts", "run_direct", "run_estimates",
    "run_summary", "submit_batches", "sync_run", "trend", "window_estimates",
]

"""Judges: one validated judge per failure mode.

A judge answers one question about one failure mode: does this trace show it? It is trusted
only after it agrees with people on traces it never saw. The modules, in workflow order:

- `labels`: people's labels per mode (how several annotators combine), the mode's stratified
  train/dev/test split with its seed, and the label audit;
- `llm_judge`: the LLM judge's prompt (sandboxed Jinja2 templates, trace content delimited as
  data), its structured answer {reasoning, verdict}, and LLM drafting of the criteria;
- `code_judge`: declarative checks (regex, JSON/schema, length, tool called, step errored,
  operator-allowed Python functions) combined with all/any/not;
- `core`: judges and their versions (every change a new version with a diff; few-shot
  examples only from train);
- `runs`: cost estimates, runs with verdicts stored per (version, trace), the one-time test run
  and its frozen result;
- `metrics`: TPR/TNR with Wilson intervals and the rest, version comparison, validation with
  the reasons a judge is not validated yet, and the label budget planner.

No Streamlit and no LLM client here: functions that call an LLM take the client as their
first argument (pages pass `ui.llm.llm_client(store)`).
"""

from evalboard.judges.code_judge import (
    CHECKS,
    EXAMPLE_RULE,
    FUNCTIONS_ENV,
    CodeJudgeConfig,
    allowed_functions,
    code_verdict,
    evaluate_rule,
    parse_rule,
)
from evalboard.judges.core import (
    DEFAULT_THRESHOLDS,
    Judge,
    Version,
    check_examples,
    create_judge,
    get_judge,
    get_version,
    list_judges,
    list_versions,
    save_version,
    set_thresholds,
    version_diff,
    version_text,
)
from evalboard.judges.labels import (
    DEFAULT_PROPORTIONS,
    PARTS,
    JudgeError,
    LabelPolicy,
    ModeInfo,
    Split,
    add_new_labels,
    check_proportions,
    correct_label,
    get_mode,
    get_split,
    label_history,
    labels_by_trace,
    make_split,
    mode_labels,
    move_to_train,
    part_ids,
    split_items,
    split_summary,
    stratified_assign,
    unsplit_labels,
    vote,
)
from evalboard.judges.llm_judge import (
    DATA_NOTE,
    DEFAULT_FAIL_WHEN,
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PASS_WHEN,
    DEFAULT_TRACE_TEMPLATE,
    JUDGE_FEATURE,
    DraftCriteria,
    Example,
    JudgeAnswer,
    LLMJudgeConfig,
    draft_criteria,
    draft_messages,
    judge_messages,
    trace_block,
)
from evalboard.judges.metrics import (
    Evaluation,
    JudgeStatus,
    LabelBudget,
    compare_versions,
    evaluate,
    judge_status,
    label_budget,
    metrics_from_pairs,
    metrics_row,
    rate_text,
    validated_judges,
)
from evalboard.judges.runs import (
    RECORDED,
    RunEstimate,
    RunReport,
    estimate_run,
    freeze_test,
    interrupted_runs,
    list_runs,
    load_traces,
    record_run,
    run_judge,
    stored_verdicts,
)

__all__ = [
    "add_new_labels", "allowed_functions", "check_examples", "check_proportions", "CHECKS",
    "code_verdict", "CodeJudgeConfig", "compare_versions", "correct_label", "create_judge",
    "DATA_NOTE", "DEFAULT_FAIL_WHEN", "DEFAULT_INSTRUCTIONS", "DEFAULT_PASS_WHEN",
    "DEFAULT_PROPORTIONS", "DEFAULT_THRESHOLDS", "DEFAULT_TRACE_TEMPLATE", "draft_criteria",
    "draft_messages", "DraftCriteria", "estimate_run", "evaluate", "evaluate_rule", "Evaluation",
    "Example", "EXAMPLE_RULE", "freeze_test", "FUNCTIONS_ENV", "get_judge", "get_mode",
    "get_split", "get_version", "interrupted_runs", "Judge", "JUDGE_FEATURE", "judge_messages",
    "judge_status", "JudgeAnswer", "JudgeError", "JudgeStatus", "label_budget", "label_history",
    "LabelBudget", "LabelPolicy", "labels_by_trace", "list_judges", "list_runs", "list_versions",
    "LLMJudgeConfig", "load_traces", "make_split", "metrics_from_pairs", "metrics_row",
    "mode_labels", "ModeInfo", "move_to_train", "parse_rule", "part_ids", "PARTS", "rate_text",
    "record_run", "RECORDED", "run_judge", "RunEstimate", "RunReport", "save_version",
    "set_thresholds", "Split", "split_items", "split_summary", "stored_verdicts",
    "stratified_assign", "trace_block", "unsplit_labels", "validated_judges", "Version",
    "version_diff", "version_text", "vote",
]

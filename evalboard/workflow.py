"""The workflow as steps, and where a project stands at each (what the home page shows)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from evalboard import query_store
from evalboard.db import judges, production_runs, pushes
from evalboard.judges import validated_judges
from evalboard.store import Store


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    purpose: str
    page: str  # the page that does this step (pages/<file>.py)


STEPS = [
    Step("queries", "Know the queries",
         "Describe the product and its users, define dimensions of how queries vary, and write "
         "realistic queries from tuples of their values.", "app_pages/dimensions.py"),
    Step("collect", "Collect traces",
         "Import traces from files or pull them from Langfuse, and draw a round: a sample to "
         "analyse.", "app_pages/import_traces.py"),
    Step("open", "Open coding",
         "Read each trace as its user saw it, mark pass or fail, and write the first thing that "
         "went wrong.", "app_pages/annotate.py"),
    Step("axial", "Axial coding",
         "Group the failure notes into named failure modes and see how often each happens.",
         "app_pages/axial.py"),
    Step("judges", "Judges",
         "Build one LLM judge per failure mode and validate it against human labels on data it "
         "never saw.", "app_pages/judges.py"),
    Step("production", "Production",
         "Run validated judges on production samples and read bias-corrected failure rates.",
         "app_pages/dashboard.py"),
    Step("vendor", "Back to the vendor",
         "Push judges, scores, labels and datasets to Langfuse.", "app_pages/sync.py"),
]


def project_status(store: Store, project_id: int) -> dict[str, int]:
    """Every count the home page shows, from the store and the per-step modules."""
    with store.engine.connect() as conn:
        def count(table) -> int:  # noqa: ANN001 - a Table
            return conn.execute(select(func.count()).select_from(table)
                                .where(table.c.project_id == project_id)).scalar_one()

        later_steps = {"judges": count(judges), "production_runs": count(production_runs),
                       "pushes": count(pushes)}
    later_steps["validated_judges"] = len(validated_judges(store, project_id))
    return {**store.project_overview(project_id), **query_store.overview_counts(store, project_id),
            **later_steps}


def step_counts(overview: dict[str, int]) -> dict[str, str]:
    """One line per step saying where the project stands, from `Store.project_overview`."""
    o = overview
    return {
        "queries": (f"{o.get('dimensions', 0)} dimensions, {o.get('tuples', 0)} tuples, "
                    f"{o.get('queries', 0)} queries ({o.get('kept_queries', 0)} kept)"),
        "collect": f"{o.get('traces', 0)} traces, {o.get('rounds', 0)} rounds",
        "open": f"{o.get('annotations', 0)} traces labelled, {o.get('failed', 0)} failed",
        "axial": f"{o.get('failure_modes', 0)} failure modes, {o.get('mode_assignments', 0)} assignments",
        "judges": f"{o.get('judges', 0)} judges, {o.get('validated_judges', 0)} validated",
        "production": f"{o.get('production_runs', 0)} production runs",
        "vendor": f"{o.get('pushes', 0)} pushes",
    }


def next_step(overview: dict[str, int], available: set[str]) -> tuple[str, str]:
    """The step to do next and why, considering only steps whose page is available."""
    o = overview
    ordered = [
        ("collect", o.get("traces", 0) == 0, "Bring in traces: import a file or load the demo."),
        ("collect", o.get("rounds", 0) == 0,
         "Draw a round: a sample of traces (50-100 is a good first pass) to read one by one."),
        ("open", o.get("annotations", 0) < 30,
         "Label traces: pass or fail, and the first failure in your own words."),
        ("axial", o.get("failure_modes", 0) == 0 and o.get("failed", 0) > 0,
         "Group your failure notes into failure modes."),
        ("judges", o.get("validated_judges", 0) == 0 and o.get("failure_modes", 0) > 0,
         "Build a judge for your most frequent failure mode."),
        ("production", o.get("production_runs", 0) == 0 and o.get("validated_judges", 0) > 0,
         "Run validated judges on a production sample."),
        ("vendor", o.get("pushes", 0) == 0 and o.get("validated_judges", 0) > 0,
         "Push validated judges to Langfuse."),
    ]
    steps = {s.key: s for s in STEPS}
    for key, pending, why in ordered:
        if pending and steps[key].page in available:
            return key, why
    if o.get("annotations", 0):
        return "open", ("Keep labelling until new failure modes stop appearing, or draw a new "
                        "round to compare with the last one.")
    return "collect", "Import traces or load the demo to begin."

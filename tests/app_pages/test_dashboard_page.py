"""The production prevalence dashboard and the production runs page through AppTest, on the demo
project (six weekly production runs of the validated email-tone judge, with a fix on 2 November).

Until the pages are listed in ui/navigation.py they are run directly
(`AppTest.from_file("../../app_pages/dashboard.py")` with `app.project_id` in session state);
once listed, through app.py and `switch_page`, as users reach them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from evalboard import production as prod
from evalboard.demo import create_demo
from evalboard.store import Store
from ui.navigation import registered

LLM_ENV = ("EVALBOARD_LLM_BASE_URL", "OPENAI_BASE_URL", "EVALBOARD_LLM_API_KEY", "OPENAI_API_KEY",
           "EVALBOARD_LLM_MODEL")
MODE = "wrong tone email"


@pytest.fixture
def demo(app_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, int]]:
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    store = Store(app_env)
    yield store, create_demo(store)
    store.dispose()


def open_page(page: str, pid: int, query: dict[str, str] | None = None, **state) -> AppTest:  # noqa: ANN003
    path = f"app_pages/{page}.py"
    listed = path in registered()
    at = AppTest.from_file("../../app.py" if listed else f"../../{path}", default_timeout=60)
    at.session_state["app.project_id"] = pid
    for key, value in (query or {}).items():
        at.query_params[key] = value
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if listed:
        at.switch_page(path).run()
    return ok(at)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def chart_data(at: AppTest) -> list[pd.DataFrame]:
    """Each chart's data (Streamlit sends it beside the spec, as Arrow), all datasets stacked."""
    return [pd.concat([pa.ipc.open_stream(d.data.data).read_pandas() for d in c.proto.datasets], ignore_index=True)
            for c in at.get("vega_lite_chart")]


def test_prevalence_view_shows_raw_and_corrected_per_mode_with_the_method(demo) -> None:  # noqa: ANN001
    store, pid = demo
    at = open_page("dashboard", pid)
    [metric] = at.metric
    assert metric.label == MODE and metric.value.endswith("%")
    [chart] = chart_data(at)
    assert set(chart["kind"]) == {"raw", "corrected"} and set(chart["mode"]) == {MODE}
    table = next(d.value for d in at.dataframe if "corrected" in d.value.columns)
    estimate = prod.window_estimates(store, pid, prod.production_judges(store, pid), date(2026, 10, 12),
                                     date(2026, 11, 22))[0]
    assert table.iloc[0]["corrected"] == pytest.approx(estimate.corrected)
    assert (table.iloc[0]["flagged"], table.iloc[0]["judged"]) == (estimate.flagged, estimate.judged) == (63, 900)
    method = " ".join(m.value for m in at.markdown)
    assert "test split is representative of production" in method and "TPR + TNR <= 1" in method
    assert {b.label for b in at.get("download_button")} >= {"Data (CSV)", "Chart (Vega-Lite JSON)"}


def test_the_window_in_the_url_sets_the_figures(demo) -> None:  # noqa: ANN001
    _, pid = demo
    before = open_page("dashboard", pid, {"dashboard.from": "2026-10-12", "dashboard.to": "2026-11-01"})
    after = open_page("dashboard", pid, {"dashboard.from": "2026-11-02", "dashboard.to": "2026-11-22"})
    assert before.date_input(key="dashboard.from").value == date(2026, 10, 12)
    share = [float(at.metric[0].value.rstrip("%")) for at in (before, after)]
    assert share[0] > 8 and share[1] < 3, share  # the email fix shipped on 2 November


@pytest.mark.parametrize(("view", "charts"), [("Trend", 1), ("Breakdown", 1), ("Compare windows", 2),
                                              ("Flagged traces", 0)])
def test_each_view_opens_from_the_url_and_computes_only_itself(demo, view: str, charts: int) -> None:  # noqa: ANN001
    _, pid = demo
    at = open_page("dashboard", pid, {"dashboard.view": view, "dashboard.period": "week",
                                      "dashboard.facet": "persona"})  # the label shown
    drawn = chart_data(at)
    assert len(drawn) == charts
    assert not at.metric, "the prevalence view is not computed while another view is open"
    if view == "Trend":
        assert drawn[0]["period"].nunique() == 6
    if view == "Breakdown":
        assert set(drawn[0]["value"]) == {"developer", "workspace admin", "non-technical manager"}
    if view == "Flagged traces":
        listing = next(m.value for m in at.markdown if "traces flagged" in m.value)
        assert listing.startswith(f"**{MODE}**: 63 traces flagged")
        assert len(at.dataframe[0].value) == 25 and "reasoning" in at.dataframe[0].value.columns


def test_a_bar_click_lists_the_flagged_traces_and_a_row_opens_the_trace(demo) -> None:  # noqa: ANN001
    _, pid = demo
    at = open_page("dashboard", pid)
    at.session_state["dashboard.bars"] = {"selection": {"pick": [{"mode": MODE}]}}
    at.run()
    ok(at)
    assert any(m.value.startswith(f"**{MODE}**: 63 traces flagged") for m in at.markdown)
    listed = next(d for d in at.dataframe if "reasoning" in d.value.columns)
    trace_id = int(listed.value.iloc[0]["trace_id"])
    at.session_state["dashboard.bars_flagged.table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    ok(at)
    assert any(m.value.startswith(f"**Trace {trace_id}**, flagged:") for m in at.markdown)


def test_without_production_runs_the_page_says_how_to_start(app_env: str) -> None:
    store = Store(app_env)
    pid = store.create_project("Empty").id
    at = open_page("dashboard", pid)
    assert "No production verdicts yet" in at.info[0].value
    assert any("evalboard judge run" in c.value for c in at.caption)


def test_production_runs_page_lists_runs_and_their_estimates(demo) -> None:  # noqa: ANN001
    store, pid = demo
    at = open_page("production_runs", pid)
    assert at.button(key="production_runs.start").disabled, "no LLM configured for the LLM judge"
    assert any("No LLM" in c.value for c in at.caption)
    runs = at.dataframe[0].value
    assert len(runs) == 6 and set(runs["status"]) == {"finished"}
    estimates = next(d.value for d in at.dataframe if "corrected" in d.value.columns)
    newest = prod.run_estimates(store, int(runs.iloc[0]["run"]))[0]
    assert estimates.iloc[0]["judged"] == newest.judged == 150
    waiting = next(e for e in at.expander if e.label.startswith("Judges not validated yet"))
    assert "TPR" in " ".join(m.value for m in waiting.markdown)


def test_production_runs_page_runs_a_code_judge_on_a_round(app_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.evalboard.test_production import build_world

    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    store = Store(app_env)
    world = build_world(store, kind="code")
    store.create_round(world.pid, "Production week", world.prod_ids)
    at = open_page("production_runs", world.pid)
    assert not at.button(key="production_runs.start").disabled, "a code judge needs no LLM"
    at.button(key="production_runs.start").click().run()
    ok(at)
    assert any(s.value.startswith("run 1 finished: 40 verdicts new") for s in at.success)
    [run] = [r for r in prod.list_runs(store, world.pid).itertuples()]
    assert (run.status, run.traces) == ("finished", 40)
    estimates = next(d.value for d in at.dataframe if "corrected" in d.value.columns)
    assert (estimates.iloc[0]["flagged"], estimates.iloc[0]["judged"]) == (10, 40)
    store.dispose()

"""The home page's reading of where a project stands."""

from __future__ import annotations

from evalboard.workflow import STEPS, next_step, step_counts

ALL = {s.page for s in STEPS}


def test_next_step_follows_the_workflow() -> None:
    assert next_step({"traces": 0}, ALL)[0] == "collect"
    assert "round" in next_step({"traces": 10, "rounds": 0}, ALL)[1]
    assert next_step({"traces": 10, "rounds": 1, "annotations": 5}, ALL)[0] == "open"
    assert next_step({"traces": 10, "rounds": 1, "annotations": 40, "failed": 9}, ALL)[0] == "axial"


def test_unavailable_steps_are_skipped() -> None:
    state = {"traces": 10, "rounds": 1, "annotations": 40, "failed": 9}
    available = ALL - {"app_pages/axial.py"}
    key, why = next_step(state, available)
    assert key != "axial" and why


def test_counts_read_like_sentences() -> None:
    lines = step_counts({"traces": 3, "rounds": 1, "annotations": 2, "failed": 1})
    assert lines["collect"] == "3 traces, 1 rounds" and lines["open"] == "2 traces labelled, 1 failed"


def test_every_step_has_a_page_in_the_navigation() -> None:
    from ui.navigation import registered

    assert {s.page for s in STEPS} <= registered()

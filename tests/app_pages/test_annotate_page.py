"""The annotation page through AppTest: label, pick and add modes, undo, people, blind mode,
deep links."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from evalboard import coding
from evalboard.models import TraceRecord
from evalboard.store import Store


@pytest.fixture
def round_setup(app_env: str):
    store = Store(app_env)
    pid = store.create_project("Shop bot", "answers shop questions").id
    ids = store.add_traces(pid, [TraceRecord(source="t", source_id=str(i), input=f"question {i}",
                                             output=f"answer {i}") for i in range(6)]).trace_ids
    rid = store.create_round(pid, "R1", ids).id
    return store, pid, ids, rid


def open_page(who: str | None, rid: int, **state) -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=30)
    at.session_state["app.round_id"] = rid
    if who:
        at.session_state["app.annotator"] = who
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    return at.switch_page("app_pages/annotate.py").run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_asks_who_is_labelling(round_setup) -> None:
    _, _, _, rid = round_setup
    at = ok(open_page(None, rid))
    assert any("Who is labelling" in i.value for i in at.info)


def test_pass_saves_and_moves_on(round_setup) -> None:
    store, pid, ids, rid = round_setup
    at = ok(open_page("ana", rid))
    assert at.session_state["annotate.trace_id"] == ids[0]
    at.button(key="annotate.pass").click().run()
    ok(at)
    assert coding.get_annotation(store, ids[0], "ana").verdict == "pass"
    assert at.session_state["annotate.trace_id"] == ids[1]
    assert at.query_params["trace"] == [str(ids[1])] or at.query_params["trace"] == str(ids[1])


def test_fail_with_new_mode_note_and_next(round_setup) -> None:
    store, pid, ids, rid = round_setup
    at = ok(open_page("ana", rid))
    at.text_input(key="annotate.new_mode").input("wrong price").run()
    ok(at)
    a = coding.get_annotation(store, ids[0], "ana")
    assert (a.verdict, a.modes) == ("fail", ["wrong price"])
    at.text_area(key=f"annotate.note.{ids[0]}").input("says $19, the docs say $29")
    at.button(key="annotate.next_save").click().run()
    ok(at)
    assert coding.get_annotation(store, ids[0], "ana").note == "says $19, the docs say $29"
    assert at.session_state["annotate.trace_id"] == ids[1]
    # The new mode is now on the quick-pick as key 1: one press labels the next trace.
    at.button(key="annotate.mode.0").click().run()
    ok(at)
    b = coding.get_annotation(store, ids[1], "ana")
    assert (b.verdict, b.modes) == ("fail", ["wrong price"])


def test_undo_restores_and_returns_to_the_trace(round_setup) -> None:
    store, pid, ids, rid = round_setup
    at = ok(open_page("ana", rid))
    at.button(key="annotate.pass").click().run()
    at.button(key="annotate.fail").click().run()
    assert coding.get_annotation(store, ids[1], "ana").verdict == "fail"
    at.button(key="annotate.undo").click().run()
    ok(at)
    assert coding.get_annotation(store, ids[1], "ana") is None
    assert at.session_state["annotate.trace_id"] == ids[1]
    at.button(key="annotate.undo").click().run()
    assert coding.get_annotation(store, ids[0], "ana") is None
    assert at.session_state["annotate.trace_id"] == ids[0]


def test_defer_and_queue_skips_my_labels(round_setup) -> None:
    store, pid, ids, rid = round_setup
    coding.save_annotation(store, pid, ids[0], "ana", verdict="pass")
    at = ok(open_page("ana", rid))
    assert at.session_state["annotate.trace_id"] == ids[1]  # my labelled trace is skipped
    at.button(key="annotate.defer").click().run()
    ok(at)
    assert coding.get_annotation(store, ids[1], "ana").deferred
    assert at.session_state["annotate.trace_id"] == ids[2]


def test_people_keep_their_labels_and_blind_mode(round_setup) -> None:
    store, pid, ids, rid = round_setup
    coding.save_annotation(store, pid, ids[0], "ana", verdict="fail", note="ANA-SECRET-NOTE")
    at = ok(open_page("ben", rid))
    assert at.session_state["annotate.trace_id"] == ids[0]
    shown = " ".join(t.value for t in at.text) + " ".join(m.value for m in at.markdown)
    assert "ANA-SECRET-NOTE" not in shown
    assert any("hidden until you label" in c.value for c in at.caption)
    at.button(key="annotate.pass").click().run()
    at.button(key="annotate.prev").click().run()  # back to the trace, now labelled by ben
    ok(at)
    shown = " ".join(t.value for t in at.text)
    assert "ANA-SECRET-NOTE" in shown
    assert coding.get_annotation(store, ids[0], "ana").verdict == "fail"
    assert coding.get_annotation(store, ids[0], "ben").verdict == "pass"


def test_switching_annotator(round_setup) -> None:
    store, pid, ids, rid = round_setup
    at = ok(open_page("ana", rid))
    at.button(key="annotate.pass").click().run()
    at.session_state["app.annotator"] = "cleo"
    at.run()
    ok(at)
    assert at.session_state["annotate.trace_id"] == ids[0]  # cleo has labelled nothing
    at.button(key="annotate.fail").click().run()
    assert coding.get_annotation(store, ids[0], "cleo").verdict == "fail"
    assert coding.get_annotation(store, ids[0], "ana").verdict == "pass"


def test_deep_link_and_jump(round_setup) -> None:
    store, pid, ids, rid = round_setup
    at = AppTest.from_file("../../app.py", default_timeout=30)
    at.query_params["trace"] = str(ids[3])
    at.query_params["round"] = str(rid)
    at.session_state["app.annotator"] = "ana"
    at.run()
    at.switch_page("app_pages/annotate.py").run()
    ok(at)
    assert at.session_state["annotate.trace_id"] == ids[3]
    at.text_input(key="annotate.jump").input(str(ids[5])).run()
    assert at.session_state["annotate.trace_id"] == ids[5]
    at.text_input(key="annotate.jump").input("99999").run()
    assert any("is not in round" in e.value for e in at.error)


def test_progress_page_agreement_and_export(round_setup) -> None:
    store, pid, ids, rid = round_setup
    for i in ids[:4]:
        coding.save_annotation(store, pid, i, "ana", verdict="fail" if i % 2 else "pass", modes=["m"] if i % 2 else [])
        coding.save_annotation(store, pid, i, "ben", verdict="fail")
    at = AppTest.from_file("../../app.py", default_timeout=30)
    at.session_state["app.round_id"] = rid
    at.run()
    at.switch_page("app_pages/coding_progress.py").run()
    ok(at)
    assert at.get("vega_lite_chart"), "saturation and mode charts render"
    tables = [t.value for t in at.dataframe]
    pairs = next(t for t in tables if "kappa" in t.columns)
    assert pairs.iloc[0]["items"] == 4 and pairs.iloc[0]["agreement"] == pytest.approx(0.5)
    assert any("traces where labels differ" in m.value for m in at.markdown)

"""Pulling from Langfuse into a round: the page (AppTest, with its background thread) and the
synchronous loop it runs (`integrations.langfuse_rounds.pull_into_round`), against the fake server.

The page starts the pull in a thread and shows it from a fragment; AppTest cannot wait for a
fragment's timer, so the tests rerun the page until the thread has finished (bounded).
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from typing import Any, Iterator

import pytest
from streamlit.testing.v1 import AppTest

import integrations.langfuse as lf
from evalboard.demo import create_demo
from evalboard.store import Store
from integrations.langfuse_rounds import (
    PENDING_METHOD,
    RoundPull,
    discard_pending,
    pending_pull,
    prepare_round,
    pull_into_round,
    round_pull_key,
    round_sampling,
)
from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.langfuse_server import fake_langfuse  # noqa: F401 - fixture
from ui import langfuse as ui_langfuse

APP = "../../app.py"
PAGE = "app_pages/langfuse_pull.py"
JOB = "langfuse_pull.job"
FAST_RETRY = lf.RetryPolicy(max_retries=3, base_delay=0.01, max_wait=1.0)


@pytest.fixture(autouse=True)
def no_pull_outlives_its_test() -> Iterator[None]:
    yield
    for job in list(ui_langfuse._JOBS.values()):
        job.cancel.set()
        if job.thread is not None:
            job.thread.join(timeout=10)


@pytest.fixture
def keys(app_env: str, fake_langfuse: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> FakeLangfuse:  # noqa: F811
    """The app's database is fresh and its Langfuse keys point at the fake (60 traces)."""
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", fake_langfuse.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake_langfuse.secret_key)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake_langfuse.url)
    return fake_langfuse


@pytest.fixture
def project(app_env: str) -> tuple[Store, int]:
    store = Store(app_env)
    return store, store.create_project("Shop").id  # type: ignore[return-value]


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def wait_for_pull(at: AppTest, timeout: float = 20.0) -> AppTest:
    """Rerun the page until this session's pull thread has ended, then once more."""
    deadline = time.monotonic() + timeout
    job = at.session_state[JOB]
    while job.running:
        assert time.monotonic() < deadline, f"the pull did not finish in {timeout} s: {job.snapshot()}"
        time.sleep(0.1)
        at.run()
    at.run()
    assert_clean(at)
    return at


def choose(at: AppTest, *, span: str = "All time", take: str | None = None, n: int | None = None,
           round_name: str | None = None) -> AppTest:
    at.radio(key="langfuse_pull.range").set_value(span)
    if take is not None:
        at.radio(key="langfuse_pull.take").set_value(take).run()
    if n is not None:
        at.number_input(key="langfuse_pull.n").set_value(n)
    if round_name is not None:
        at.text_input(key="langfuse_pull.new_round").input(round_name)
    return at


def newest_trace_ids(fake: FakeLangfuse, n: int) -> set[str]:
    return {row["traceId"] for row in fake.index.roots[:n]}  # roots are kept newest first


def source_ids(store: Store, round_id: int) -> list[str]:
    return [store.get_trace(t).source_id for t in store.round_trace_ids(round_id)]  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------- page
def test_without_keys_the_page_says_how_to_configure(app_env: str, project, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    at = open_page()
    assert any("LANGFUSE_PUBLIC_KEY" in i.value for i in at.info)
    assert [link.proto.page for link in at.get("page_link")][-1] == "settings"
    assert not [b for b in at.button if b.key == "langfuse_pull.go"], "no Pull button without keys"


def test_page_without_a_project_and_on_the_demo(keys: FakeLangfuse, app_env: str) -> None:
    at = open_page()
    assert any("No project yet" in i.value for i in at.info)
    create_demo(Store(app_env))
    at = open_page()
    assert at.radio(key="langfuse_pull.target").options == ["A new round", "An existing round"]
    assert at.button(key="langfuse_pull.go").label == "Pull"


def test_pull_latest_n_into_a_new_round_in_the_background(keys: FakeLangfuse, project) -> None:  # noqa: ANN001
    store, pid = project
    at = choose(open_page(), take="The latest N", n=7, round_name="From Langfuse")
    at.button(key="langfuse_pull.go").click().run()
    assert_clean(at)
    wait_for_pull(at)
    [rnd] = store.list_rounds(pid)
    assert rnd.name == "From Langfuse" and rnd.trace_count == 7
    assert set(source_ids(store, rnd.id)) == newest_trace_ids(keys, 7)  # type: ignore[arg-type]
    assert rnd.sampling["method"] == "latest" and rnd.sampling["n"] == 7 and rnd.sampling["of"] == 60
    assert rnd.sampling["langfuse"][0]["base_url"] == keys.url
    assert any("Pulled 7 of 60 matching traces into round 'From Langfuse': 7 new" in s.value for s in at.success)
    assert at.session_state["app.round_id"] == rnd.id, "the new round became the current round"


def test_filters_and_random_sample_reach_the_round(keys: FakeLangfuse, project) -> None:  # noqa: ANN001
    store, pid = project
    wanted = {r["traceId"] for r in keys.index.roots if r["environment"] == "production" and "web" in r["tags"]}
    assert len(wanted) > 5
    at = choose(open_page(), take="A random sample of N", n=5, round_name="Web sample")
    at.text_input(key="langfuse_pull.env").input("production")
    at.text_input(key="langfuse_pull.tags").input("web")
    at.number_input(key="langfuse_pull.seed").set_value(7)
    at.button(key="langfuse_pull.go").click().run()
    wait_for_pull(at)
    [rnd] = store.list_rounds(pid)
    pulled = set(source_ids(store, rnd.id))  # type: ignore[arg-type]
    assert len(pulled) == 5 and pulled <= wanted
    assert rnd.sampling["method"] == "random" and rnd.sampling["seed"] == 7 and rnd.sampling["of"] == len(wanted)
    assert rnd.sampling["filter"] == {"environment": ["production"], "tags": ["web"]}


def test_bad_choices_are_named_and_nothing_starts(keys: FakeLangfuse, project) -> None:  # noqa: ANN001
    store, pid = project
    store.create_round(pid, "Taken")
    at = open_page()
    at.radio(key="langfuse_pull.target").set_value("A new round").run()
    at.radio(key="langfuse_pull.range").set_value("Between").run()
    today = date.today()
    at.date_input(key="langfuse_pull.from_day").set_value(today)
    at.date_input(key="langfuse_pull.to_day").set_value(today - timedelta(days=2))
    at.text_input(key="langfuse_pull.new_round").input("Taken")
    at.button(key="langfuse_pull.go").click().run()
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("Time range: 'From'") and "must be before 'To'" in e for e in errors)
    assert any("already has a round named 'Taken'" in e for e in errors)
    at.text_input(key="langfuse_pull.new_round").input("  ")
    at.button(key="langfuse_pull.go").click().run()
    assert any(e.value == "New round name: give the round a name." for e in at.error)
    assert JOB not in at.session_state and [r.name for r in store.list_rounds(pid)] == ["Taken"]
    assert not keys.requests_to("/api/public/v2/observations")


def test_cancel_then_continue_from_the_page(keys: FakeLangfuse, project) -> None:  # noqa: ANN001
    store, pid = project
    keys.latency = 1.0  # slow enough to press Cancel while it runs, even on a busy machine
    at = choose(open_page(), round_name="Slow")
    at.button(key="langfuse_pull.go").click().run()
    assert at.get("progress"), "a progress bar while the pull runs"
    at.button(key="langfuse_pull.cancel").click().run()
    wait_for_pull(at)
    assert any("Pull into round 'Slow' stopped after" in w.value for w in at.warning)
    rid = store.list_rounds(pid)[0].id
    assert pending_pull(store, rid).status == "cancelled"  # type: ignore[union-attr, arg-type]

    keys.latency = 0.0
    at.button(key="langfuse_pull.continue").click().run()
    wait_for_pull(at)
    assert any("into round 'Slow'" in s.value for s in at.success)
    assert store.get_round(rid).trace_count == 60 and store.count_traces(pid) == 60  # type: ignore[union-attr, arg-type]
    assert pending_pull(store, rid) is None  # type: ignore[arg-type]


def test_an_interrupted_pull_is_offered_and_pull_continues_it(keys: FakeLangfuse, project) -> None:  # noqa: ANN001
    store, pid = project
    rnd, _ = prepare_round(store, pid, "Half done")
    first = cancel_after_batches(store, keys, pid, rnd.id, 2, lf.Sampling("latest", 30), batch_size=10)  # type: ignore[arg-type]
    assert first.status == "cancelled" and first.done == 20

    at = open_page()  # a new session, as after a restart
    assert any("Round 'Half done': A pull into this round was cancelled after 20 of 30 traces" in w.value
               for w in at.warning)
    assert at.radio(key="langfuse_pull.target").value == "An existing round"
    go = at.button(key="langfuse_pull.go")
    assert go.label == "Continue the interrupted pull"
    at.radio(key="langfuse_pull.range").set_value("Last 24 hours")  # ignored: the pull keeps its own filters
    go.click().run()
    wait_for_pull(at)
    assert set(source_ids(store, rnd.id)) == newest_trace_ids(keys, 30)  # type: ignore[arg-type]
    assert store.count_traces(pid) == 30
    assert any("Pulled 30 of 60 matching traces into round 'Half done': 10 new" in s.value for s in at.success)


def test_rejected_keys_show_the_reason_and_a_link_to_settings(keys: FakeLangfuse, project,  # noqa: ANN001
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong-one-0000")
    at = choose(open_page(), round_name="Nope")
    at.button(key="langfuse_pull.go").click().run()
    wait_for_pull(at)
    assert any("rejected the keys (401)" in e.value for e in at.error)
    assert any(link.proto.page == "settings" for link in at.get("page_link"))


# ------------------------------------------------------------------------ the synchronous loop
def cancel_after_batches(store: Store, fake: FakeLangfuse, pid: int, rid: int, batches: int,
                         sampling: lf.Sampling, **kwargs: Any) -> RoundPull:
    cancel = threading.Event()
    seen = {"batches": 0}

    def on_progress(pull: RoundPull) -> None:
        if pull.phase == "batch":
            seen["batches"] += 1
            if seen["batches"] >= batches:
                cancel.set()

    return pull_into_round(store, settings_for(fake), pid, rid, lf.PullFilters(), sampling, cancel=cancel,
                           on_progress=on_progress, retry=FAST_RETRY, **kwargs)


def settings_for(fake: FakeLangfuse, **overrides: Any) -> lf.LangfuseSettings:
    values = {"public_key": fake.public_key, "secret_key": fake.secret_key, "base_url": fake.url, "timeout": 5.0}
    return lf.LangfuseSettings(**{**values, **overrides})


def test_resume_after_cancel_then_a_rerun_adds_nothing(fake_langfuse: FakeLangfuse, store: Store) -> None:  # noqa: F811
    pid = store.create_project("P").id
    rnd, created = prepare_round(store, pid, "R")  # type: ignore[arg-type]
    assert created and rnd.sampling["method"] == PENDING_METHOD
    sampling = lf.Sampling("random", 25, seed=5)
    first = cancel_after_batches(store, fake_langfuse, pid, rnd.id, 2, sampling, batch_size=5)  # type: ignore[arg-type]
    assert (first.status, first.done, first.planned, first.added) == ("cancelled", 10, 25, 10)
    pending = pending_pull(store, rnd.id)  # type: ignore[arg-type]
    assert pending is not None and (pending.done, pending.planned, pending.sampling) == (10, 25, sampling)

    progress: list[RoundPull] = []
    second = pull_into_round(store, settings_for(fake_langfuse), pid, rnd.id, pending.filters, pending.sampling,  # type: ignore[arg-type]
                             on_progress=lambda p: progress.append(p), retry=FAST_RETRY, batch_size=5)
    assert (second.status, second.resumed, second.done_before, second.added, second.duplicates) == ("done", True, 10, 15, 0)
    assert progress[-1].fraction == 1.0 and second.summary().startswith("Pulled 25 of 60 matching traces")
    assert pending_pull(store, rnd.id) is None  # type: ignore[arg-type]

    third = pull_into_round(store, settings_for(fake_langfuse), pid, rnd.id, lf.PullFilters(), sampling,  # type: ignore[arg-type]
                            retry=FAST_RETRY, batch_size=5)
    assert third.already_complete and third.added == 0 and "Nothing to do" in third.summary()
    final = store.get_round(rnd.id)  # type: ignore[arg-type]
    assert final.trace_count == 25 and store.count_traces(pid) == 25  # type: ignore[union-attr, arg-type]
    assert final.sampling["method"] == "random" and final.sampling["seed"] == 5  # type: ignore[union-attr]
    assert len(final.sampling["langfuse"]) == 1, "a resumed pull is recorded once"  # type: ignore[union-attr]


def test_rejected_keys_fail_as_a_configuration_error(fake_langfuse: FakeLangfuse, store: Store) -> None:  # noqa: F811
    pid = store.create_project("P").id
    rnd, _ = prepare_round(store, pid, "R")  # type: ignore[arg-type]
    result = pull_into_round(store, settings_for(fake_langfuse, secret_key="sk-lf-wrong"), pid, rnd.id,  # type: ignore[arg-type]
                             retry=FAST_RETRY)
    assert result.status == "failed" and result.config_error and result.http_status == 401
    assert "rejected the keys (401)" in result.summary()
    assert pending_pull(store, rnd.id).status == "failed"  # type: ignore[union-attr, arg-type]


def test_records_of_a_deleted_round_do_not_leak_into_a_new_one(fake_langfuse: FakeLangfuse, store: Store) -> None:  # noqa: F811
    pid = store.create_project("P").id
    old, _ = prepare_round(store, pid, "Old")  # type: ignore[arg-type]
    done = pull_into_round(store, settings_for(fake_langfuse), pid, old.id, sampling=lf.Sampling("latest", 4))  # type: ignore[arg-type]
    assert done.status == "done"
    store.delete_round(old.id)  # type: ignore[arg-type]
    # As when SQLite hands the deleted round's id to the next round: the old records are still there.
    store.set_state(round_pull_key(old.id) + ":job", {**store.get_state(round_pull_key(old.id) + ":job"), "status": "failed"})  # type: ignore[arg-type, dict-item]
    new = store.create_round(pid, "New", sampling={"method": PENDING_METHOD})
    if new.id != old.id:  # other backends never reuse ids: move the records to the new id
        for suffix in ("", ":plan", ":job"):
            store.set_state(round_pull_key(new.id) + suffix, store.get_state(round_pull_key(old.id) + suffix))  # type: ignore[arg-type]
    assert pending_pull(store, new.id) is None  # type: ignore[arg-type]
    again = pull_into_round(store, settings_for(fake_langfuse), pid, new.id, sampling=lf.Sampling("latest", 4))  # type: ignore[arg-type]
    assert not again.resumed and again.added == 0 and again.duplicates == 4
    assert store.get_round(new.id).trace_count == 4  # type: ignore[union-attr, arg-type]


def test_round_sampling_keeps_an_existing_round_and_lists_each_pull_once() -> None:
    record = {"source": "langfuse", "method": "latest", "n": None, "seed": None, "filters": {"tags": ["vip"]},
              "matched": 12, "drawn": 12}
    imported = {"method": "import", "file": "a.jsonl", "order": {"method": "time"}}
    merged = round_sampling(round_sampling(imported, record), record)
    assert merged == {**imported, "langfuse": [record]}
    made = round_sampling({"source": "langfuse", "method": PENDING_METHOD}, record)
    assert (made["method"], made["n"], made["of"], made["filter"]) == ("all", 12, 12, {"tags": ["vip"]})


def test_discard_pending_forgets_the_checkpoint(fake_langfuse: FakeLangfuse, store: Store) -> None:  # noqa: F811
    pid = store.create_project("P").id
    rnd, _ = prepare_round(store, pid, "R")  # type: ignore[arg-type]
    cancel_after_batches(store, fake_langfuse, pid, rnd.id, 1, lf.Sampling("latest", 10), batch_size=5)  # type: ignore[arg-type]
    assert pending_pull(store, rnd.id) is not None  # type: ignore[arg-type]
    discard_pending(store, rnd.id)  # type: ignore[arg-type]
    assert pending_pull(store, rnd.id) is None and store.get_state(round_pull_key(rnd.id)) is None  # type: ignore[arg-type]
    assert store.get_round(rnd.id).trace_count == 5, "traces already pulled stay in the round"  # type: ignore[union-attr, arg-type]

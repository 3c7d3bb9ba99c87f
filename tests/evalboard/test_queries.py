"""Know the queries: storage (on every backend), prompt building, near-duplicates, export, and
query generation through the real LLM client against the fake OpenAI server."""

from __future__ import annotations

import csv
import io
import json

import pytest

from evalboard import query_store as qs
from evalboard.queries import (
    GeneratedQueries,
    SuggestedValues,
    clean_queries,
    export_queries,
    find_near_duplicates,
    generate_queries,
    mark_near_duplicates,
    new_suggestions,
    parse_values_text,
    query_messages,
    suggest_values,
    suggest_values_messages,
    values_text,
)
from evalboard.store import Store, StoreError
from evalboard.tuples import Dimension, DimensionValue, pairwise_tuples
from integrations.llm import DictCache, LLMClient, LLMSettings
from tests.fakes.openai_server import FakeOpenAI, Fault
from tests.fakes.openai_server import fake_openai  # noqa: F401  (pytest fixture)

CONTEXT = "Billing assistant inside AcmeBooks; users are accountants and small-shop owners."


def persona_dims() -> list[Dimension]:
    return [
        Dimension(name="user_type", description="who is asking",
                  values=[DimensionValue(name="accountant", description="does books for many clients"),
                          DimensionValue(name="shop owner", description="does their own books, rushed")]),
        Dimension(name="style", description="how they write",
                  values=[DimensionValue(name="sloppy", description="typos, no punctuation, lower case"),
                          DimensionValue(name="formal")]),
        Dimension(name="intent", values=["refund", "export", "tax"]),
    ]


@pytest.fixture
def dims_in_store(store: Store, project_id: int) -> list[int]:
    return [qs.add_dimension(store, project_id, d) for d in persona_dims()]


@pytest.fixture
def local(sqlite_store: Store) -> tuple[Store, int]:
    """One SQLite project, for tests whose subject is not the storage backend."""
    return sqlite_store, sqlite_store.create_project("Local", CONTEXT).id


def client_for(fake: FakeOpenAI, cache=None, **changes) -> LLMClient:
    settings = LLMSettings(base_url=fake.base_url, api_key="sk-test-key-123456", model="fake-model",
                           retry_base_delay=0.01, prices={"fake-model": (1.0, 2.0)})
    return LLMClient(settings.replace(**changes), cache)


# ------------------------------------------------------------------------------------- storage


def test_schema_has_the_queries_tables(store: Store) -> None:
    assert store.schema_revision() == Store.head_revision()  # 0002 and every migration after it


def test_dimensions_add_edit_reorder_delete(store: Store, project_id: int, dims_in_store: list[int]) -> None:
    names = [d.name for d in qs.list_dimensions(store, project_id)]
    assert names == ["user_type", "style", "intent"]
    stored = qs.list_dimensions(store, project_id)[0]
    assert stored.values[0].description == "does books for many clients"

    qs.move_dimension(store, dims_in_store[2], -1)
    assert [d.name for d in qs.list_dimensions(store, project_id)] == ["user_type", "intent", "style"]
    qs.move_dimension(store, dims_in_store[0], +5)  # clamped at the end
    assert [d.name for d in qs.list_dimensions(store, project_id)] == ["intent", "style", "user_type"]

    qs.update_dimension(store, dims_in_store[1], Dimension(name="tone", values=["curt", "polite"]))
    tone = qs.get_dimension(store, dims_in_store[1])
    assert (tone.name, tone.value_names, tone.position) == ("tone", ["curt", "polite"], 1)
    with pytest.raises(StoreError, match="already has a dimension named 'intent'"):
        qs.update_dimension(store, dims_in_store[1], Dimension(name="intent", values=["x"]))
    with pytest.raises(StoreError, match="already has a dimension named 'tone'"):
        qs.add_dimension(store, project_id, Dimension(name="tone", values=["x"]))

    qs.delete_dimension(store, dims_in_store[0])
    assert [d.name for d in qs.project_dimensions(store, project_id)] == ["intent", "tone"]


def test_add_dimension_values_skips_names_already_there(store: Store, project_id: int, dims_in_store) -> None:
    added = qs.add_dimension_values(store, dims_in_store[2], [
        DimensionValue(name="Refund"), DimensionValue(name="payroll", description="salaries"),
        DimensionValue(name="payroll")])
    assert added == 1
    assert qs.get_dimension(store, dims_in_store[2]).value_names == ["refund", "export", "tax", "payroll"]


def test_exclusions_are_saved_only_when_every_line_parses(store: Store, project_id: int, dims_in_store) -> None:
    with pytest.raises(ValueError, match=r"line 2: .*unknown dimension 'styel'.*did you mean 'style'"):
        qs.save_exclusions(store, project_id, "user_type=accountant, intent=refund\nstyel=sloppy")
    assert qs.exclusions_text(store, project_id) == ""
    rules = qs.save_exclusions(store, project_id, "# shop owners never ask about tax\nuser_type=shop owner, intent=tax")
    assert [str(r) for r in rules] == ["user_type=shop owner, intent=tax"]
    assert len(qs.project_exclusions(store, project_id)) == 1
    # Renaming a value the rule uses makes the saved rule stale: reported with its line.
    qs.update_dimension(store, dims_in_store[2], Dimension(name="intent", values=["refund", "export", "vat"]))
    with pytest.raises(ValueError, match="line 2: .*'tax' is not a value"):
        qs.project_exclusions(store, project_id)


def test_tuples_are_stored_once_whatever_made_them(store: Store, project_id: int, dims_in_store) -> None:
    dims = qs.project_dimensions(store, project_id)
    made = pairwise_tuples(dims)
    first = qs.add_tuples(store, project_id, made, "pairwise", seed=0)
    assert (first.added, first.existing) == (len(made), 0)
    # The same combination with keys in another order is the same tuple.
    reordered = {k: made[0][k] for k in reversed(list(made[0]))}
    again = qs.add_tuples(store, project_id, [reordered, {"user_type": "accountant", "style": "formal",
                                                          "intent": "tax"}], "manual")
    assert again.ids[0] == first.ids[0]
    assert again.added + again.existing == 2
    stored = qs.list_tuples(store, project_id)
    assert len(stored) == len(made) + again.added
    assert stored[0].origin == "pairwise" and stored[0].seed == 0
    with pytest.raises(StoreError, match="Unknown tuple origin"):
        qs.add_tuples(store, project_id, made, "magic")


def test_tuples_frame_flags_tuples_that_no_longer_fit(store: Store, project_id: int, dims_in_store) -> None:
    qs.add_tuples(store, project_id, [
        {"user_type": "accountant", "style": "formal", "intent": "tax"},
        {"user_type": "shop owner", "style": "sloppy", "intent": "tax"}], "manual")
    qs.update_dimension(store, dims_in_store[0], Dimension(name="user_type", values=["accountant", "clerk"]))
    frame = qs.tuples_frame(store, project_id, qs.project_dimensions(store, project_id))
    assert list(frame.columns) == ["id", "user_type", "style", "intent", "origin", "seed", "queries", "problem"]
    assert frame["problem"].tolist() == ["", "'shop owner' is no longer a value of 'user_type'"]
    assert qs.delete_tuples(store, project_id, [int(frame.iloc[1]["id"])]) == 1
    assert len(qs.list_tuples(store, project_id)) == 1


def test_queries_store_dedupe_edit_and_status(store: Store, project_id: int, dims_in_store) -> None:
    tup = {"user_type": "accountant", "style": "formal", "intent": "tax"}
    tid = qs.add_tuples(store, project_id, [tup], "manual").ids[0]
    added = qs.add_queries(store, project_id, [
        qs.NewQuery(text=" how do I file VAT? ", tuple_id=tid, dimensions=tup, model="m"),
        qs.NewQuery(text="vat deadline", tuple_id=tid, dimensions=tup, model="m")])
    assert added.added == 2
    again = qs.add_queries(store, project_id, [qs.NewQuery(text="how do I file VAT?", tuple_id=tid, dimensions=tup)])
    assert (again.added, again.existing, again.ids) == (0, 1, added.ids[:1])
    with pytest.raises(StoreError, match="Query 1 is empty"):
        qs.add_queries(store, project_id, [qs.NewQuery(text="   ")])

    first, second = added.ids
    qs.update_query(store, project_id, first, text="how do i file vat", status="kept")
    q = qs.get_queries(store, project_id, ids=[first])[0]
    assert (q.text, q.original_text, q.status, q.dimensions) == ("how do i file vat", "how do I file VAT?", "kept", tup)
    with pytest.raises(StoreError, match="unknown status 'maybe'"):
        qs.update_query(store, project_id, first, status="maybe")
    with pytest.raises(StoreError, match="cannot be empty"):
        qs.update_query(store, project_id, first, text=" ")
    other = store.create_project("Other").id
    with pytest.raises(StoreError, match="No query"):
        qs.update_query(store, other, first, status="kept")

    assert qs.set_query_status(store, project_id, [second], "unrealistic") == 1
    assert qs.status_counts(store, project_id) == {"new": 0, "kept": 1, "discarded": 0, "unrealistic": 1}
    assert [x.id for x in qs.get_queries(store, project_id, ["kept"])] == [first]
    assert qs.count_queries(store, project_id, ["kept", "unrealistic"]) == 2
    assert qs.tuple_query_counts(store, project_id) == {tid: 2}
    frame = qs.queries_frame(qs.get_queries(store, project_id), ["user_type", "style", "intent"])
    assert frame.loc[0, "edited"] and not frame.loc[1, "edited"]
    assert frame.loc[0, "intent"] == "tax"
    # Deleting the tuple keeps the queries and their values.
    qs.delete_tuples(store, project_id)
    kept = qs.get_queries(store, project_id, ids=[first])[0]
    assert kept.tuple_id is None and kept.dimensions == tup


def test_targets_and_runs(store: Store, project_id: int) -> None:
    tid = qs.save_target(store, project_id, "my app", "http", {"url": "http://x/chat"})
    assert qs.save_target(store, project_id, "my app", "http", {"url": "http://y/chat"}) == tid
    assert [t.config["url"] for t in qs.list_targets(store, project_id)] == ["http://y/chat"]
    with pytest.raises(StoreError, match="Unknown target kind"):
        qs.save_target(store, project_id, "x", "grpc", {})
    target = qs.get_target(store, tid)
    with pytest.raises(StoreError, match="no queries to send"):
        qs.create_run(store, project_id, target, [], None)
    rnd = store.create_round(project_id, "run round")
    run_id = qs.create_run(store, project_id, target, [3, 1, 2], rnd.id)
    run = qs.get_run(store, run_id)
    assert (run.query_ids, run.round_id, run.status, run.config["kind"]) == ([3, 1, 2], rnd.id, "pending", "http")
    qs.update_run(store, run_id, status="finished", succeeded=2, failed=1, finished=True)
    run = qs.list_runs(store, project_id)[0]
    assert (run.status, run.succeeded, run.failed) == ("finished", 2, 1) and run.finished_at is not None
    qs.delete_target(store, tid)
    assert qs.get_run(store, run_id).target_id is None  # the run outlives its target


def test_overview_counts(store: Store, project_id: int, dims_in_store) -> None:
    qs.add_queries(store, project_id, [qs.NewQuery(text="a", status="kept"), qs.NewQuery(text="b")])
    counts = qs.overview_counts(store, project_id)
    assert counts == {"dimensions": 3, "tuples": 0, "queries": 2, "kept_queries": 1, "target_runs": 0}


# ------------------------------------------------------------------------------------- prompts


def test_query_prompt_carries_context_tuple_values_and_descriptions() -> None:
    dims = persona_dims()
    tup = {"user_type": "shop owner", "style": "sloppy", "intent": "refund"}
    messages = query_messages(CONTEXT, dims, tup, n=4)
    system, user = messages[0]["content"], messages[1]["content"]
    assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
    assert CONTEXT in system
    # Persona and style instructions: write as they type, with typos and fragments when fitting.
    for phrase in ("typos", "shorthand", "incomplete sentences", "Do not name the dimensions", "no numbering"):
        assert phrase in system
    assert "- user_type (who is asking): shop owner - does their own books, rushed" in user
    assert "- style (how they write): sloppy - typos, no punctuation, lower case" in user
    assert "- intent: refund" in user
    assert "Write 4 different queries" in user
    assert "Set" not in user
    assert "Set 2" in query_messages(CONTEXT, dims, tup, n=1, batch=2)[1]["content"]
    assert "Write 1 query this" in query_messages(CONTEXT, dims, tup, n=1)[1]["content"]
    assert "No description of the product" in query_messages("  ", dims, tup, n=1)[0]["content"]
    with pytest.raises(ValueError, match="between 1 and 20"):
        query_messages(CONTEXT, dims, tup, n=0)


def test_suggest_prompt_has_context_other_dimensions_and_existing_values() -> None:
    dims = persona_dims()
    messages = suggest_values_messages(CONTEXT, "intent", "what they want done", dims, ["refund", "export"], n=5)
    system, user = messages[0]["content"], messages[1]["content"]
    assert CONTEXT in system
    assert "- user_type (who is asking): accountant, shop owner" in system
    assert "- intent" not in system  # the dimension itself is not listed as "other"
    assert "Dimension: intent" in user and "What it means: what they want done" in user
    assert "do not repeat them): refund, export" in user and "Propose 5 values" in user


def test_new_suggestions_drop_existing_and_repeated_names() -> None:
    answer = SuggestedValues.model_validate({"values": [
        {"name": "Refund", "description": "x"}, {"name": " payroll ", "description": "salaries"},
        {"name": "PAYROLL", "description": "again"}, {"name": "invoices", "description": ""}]})
    kept = new_suggestions(answer, ["refund", "export"])
    assert [(v.name, v.description) for v in kept] == [("payroll", "salaries"), ("invoices", "")]


def test_clean_queries_strips_markers_and_quotes_but_keeps_typos() -> None:
    raw = ["1. how do i refnd", '"wheres my invoice"', "- tax q", "  ", "how do i refnd", "2) last one"]
    assert clean_queries(raw, 10) == ["how do i refnd", "wheres my invoice", "tax q", "last one"]
    assert clean_queries(raw, 2) == ["how do i refnd", "wheres my invoice"]


def test_values_text_round_trip_and_errors() -> None:
    values = parse_values_text("beginner: first week\n\nexpert\n10:30 slot: a time, kept whole")
    assert [(v.name, v.description) for v in values] == [
        ("beginner", "first week"), ("expert", ""), ("10:30 slot", "a time, kept whole")]
    assert parse_values_text(values_text(values)) == values
    with pytest.raises(ValueError, match="line 3: 'Beginner' repeats line 1"):
        parse_values_text("beginner\nexpert\nBeginner")
    with pytest.raises(ValueError, match="at least one value"):
        parse_values_text("\n  \n")


# ------------------------------------------------------------------------------------- near-duplicates


def test_near_duplicates_found_against_earlier_queries() -> None:
    texts = [
        "How do I reset my password?",
        "how do i change my email address",
        "how do i reset my password",         # case and punctuation: a repeat of 0
        "my order #1234 hasn't arrived yet, what should I do",
        "the app crashes when I open a PDF",
        "my order #5678 hasn't arrived yet, what should I do",  # same template as 3
        "charged twice in march, why",
    ]
    marks = find_near_duplicates(texts)
    assert marks[0] is None and marks[1] is None and marks[4] is None and marks[6] is None
    assert marks[2][0] == 0 and marks[2][1] > 0.95
    assert marks[5][0] == 3 and 0.8 <= marks[5][1] < 1.0
    # A stricter threshold keeps only the exact rewording.
    strict = find_near_duplicates(texts, threshold=0.95)
    assert [i for i, m in enumerate(strict) if m] == [2]
    assert find_near_duplicates(["only one"]) == [None]
    assert find_near_duplicates(["???", "!!!"]) == [None, None]
    with pytest.raises(ValueError, match="threshold"):
        find_near_duplicates(texts, threshold=0)


def test_near_duplicates_in_chunks_match_one_pass() -> None:
    texts = [f"question {i % 7} about invoice number {i % 5}" for i in range(40)]
    assert find_near_duplicates(texts, chunk=6) == find_near_duplicates(texts, chunk=500)


def test_mark_near_duplicates_ignores_discarded_queries(local: tuple[Store, int]) -> None:
    store, project_id = local
    ids = qs.add_queries(store, project_id, [qs.NewQuery(text=t) for t in [
        "how do I export my invoices to CSV", "How do I export my invoices to csv??", "what is the VAT rate"]]).ids
    assert mark_near_duplicates(store, project_id) == 1
    marked = qs.get_queries(store, project_id, ids=[ids[1]])[0]
    assert marked.duplicate_of == ids[0] and marked.similarity > 0.95
    # Once the repeat is discarded it loses its mark; nothing else is marked.
    qs.set_query_status(store, project_id, [ids[1]], "discarded")
    assert mark_near_duplicates(store, project_id) == 0
    assert qs.count_queries(store, project_id, duplicates_only=True) == 0


# ------------------------------------------------------------------------------------- export


def test_export_csv_and_jsonl_keep_the_tuple_and_awkward_text(local: tuple[Store, int]) -> None:
    store, project_id = local
    tup = {"user_type": "accountant", "intent": "tax"}
    awkward = 'line one, with "quotes"\nline two'
    qs.add_queries(store, project_id, [qs.NewQuery(text=awkward, dimensions=tup, model="m"),
                                       qs.NewQuery(text="plain", dimensions=None)])
    items = qs.get_queries(store, project_id)
    rows = list(csv.DictReader(io.StringIO(export_queries(items, "csv", ["user_type", "intent"]).decode())))
    assert rows[0]["query"] == awkward and rows[0]["intent"] == "tax" and rows[0]["model"] == "m"
    assert rows[1]["user_type"] == "" and rows[1]["status"] == "new"
    lines = export_queries(items, "jsonl").decode().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["query"] == awkward and first["dimensions"] == tup
    with pytest.raises(ValueError, match="unknown export format"):
        export_queries(items, "xml")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- generation


def _setup_tuples(store: Store, project_id: int, k: int | None = None) -> tuple[list[Dimension], list[qs.StoredTuple]]:
    dims = persona_dims()
    for d in dims:
        qs.add_dimension(store, project_id, d)
    made = pairwise_tuples(dims)[:k]
    qs.add_tuples(store, project_id, made, "pairwise")
    return dims, qs.list_tuples(store, project_id)


def _scripted(request: dict) -> dict:
    """Three queries that name the tuple, so tests can check which tuple each query came from."""
    user = request["messages"][-1]["content"]
    value = user.split("- intent: ")[1].split("\n")[0] if "- intent: " in user else "?"
    return {"queries": [f"1. {value} question a", f"{value} question b", f"{value} question c"]}


def test_generation_stores_queries_with_their_tuple(local: tuple[Store, int], fake_openai: FakeOpenAI) -> None:
    store, project_id = local
    dims, tuples = _setup_tuples(store, project_id, k=4)
    fake_openai.respond_with(_scripted)
    progress: list[tuple[int, int]] = []
    report = generate_queries(client_for(fake_openai), store, project_id, tuples, 2, context=CONTEXT, dims=dims,
                              on_progress=lambda d, t: progress.append((d, t)))
    assert (report.done, report.added, report.requests, report.cache_hits, report.failed) == (4, 8, 4, 0, [])
    assert report.cost is not None and report.cost > 0
    assert progress[-1] == (4, 4)
    stored = qs.get_queries(store, project_id)
    assert len(stored) == 8
    for q in stored:
        tup = next(t for t in tuples if t.id == q.tuple_id)
        assert q.dimensions == tup.values
        assert q.text.startswith(tup.values["intent"])  # "1. " marker removed, n=2 kept
        assert q.model == "fake-model" and q.status == "new" and q.origin == "llm"
    request = fake_openai.chat_requests[0].json
    assert request["response_format"]["type"] == "json_schema"
    assert CONTEXT in request["messages"][0]["content"]


def test_same_generation_twice_costs_one_request(store: Store, project_id: int, fake_openai: FakeOpenAI) -> None:
    dims, tuples = _setup_tuples(store, project_id, k=1)
    fake_openai.respond_with(_scripted)
    client = client_for(fake_openai, cache=store.llm_cache())
    first = generate_queries(client, store, project_id, tuples, 3, context=CONTEXT, dims=dims)
    # A new client on the same store: the persistent cache, not the client, remembers.
    second = generate_queries(client_for(fake_openai, cache=store.llm_cache()), store, project_id, tuples, 3,
                              context=CONTEXT, dims=dims)
    assert fake_openai.count() == 1
    assert (first.requests, first.added) == (1, 3)
    assert (second.requests, second.cache_hits, second.added, second.existing, second.cost) == (0, 1, 0, 3, 0.0)
    # Another set is another request, with new queries.
    fake_openai.respond_with(lambda r: {"queries": ["set two query"]})
    third = generate_queries(client, store, project_id, tuples, 3, context=CONTEXT, dims=dims, batch=2)
    assert fake_openai.count() == 2 and third.added == 1
    usage = store.llm_cache().usage()
    assert usage["calls"].sum() == 2 and set(usage["feature"]) == {"querygen"}


def test_malformed_answer_is_asked_again(local: tuple[Store, int], fake_openai: FakeOpenAI) -> None:
    store, project_id = local
    dims, tuples = _setup_tuples(store, project_id, k=1)
    fake_openai.queue("this is not JSON at all", {"queries": ["fixed query"]})
    report = generate_queries(client_for(fake_openai), store, project_id, tuples, 1, context=CONTEXT, dims=dims)
    assert report.added == 1 and report.failed == []
    assert fake_openai.count() == 2
    retry = fake_openai.chat_requests[1].json["messages"]
    assert retry[-1]["role"] == "user" and "not valid" in retry[-1]["content"]
    assert [q.text for q in qs.get_queries(store, project_id)] == ["fixed query"]


def test_failed_tuples_are_reported_and_the_rest_stored(local: tuple[Store, int], fake_openai: FakeOpenAI) -> None:
    store, project_id = local
    dims, tuples = _setup_tuples(store, project_id, k=3)
    target = tuples[1].values["intent"]

    def answer(request: dict):
        if f"- intent: {target}\n" in request["messages"][-1]["content"] and \
                tuples[1].values["user_type"] in request["messages"][-1]["content"] and \
                tuples[1].values["style"] in request["messages"][-1]["content"]:
            return Fault(400, "bad request for this one")
        return _scripted(request)

    fake_openai.respond_with(answer)
    report = generate_queries(client_for(fake_openai), store, project_id, tuples, 1, context=CONTEXT, dims=dims)
    assert [tid for tid, _ in report.failed] == [tuples[1].id]
    assert "HTTP 400" in report.failed[0][1] and "sk-test-key" not in report.failed[0][1]
    assert report.done == 2 and report.added == 2
    assert "1 tuples failed" in report.summary()


def test_generation_marks_near_duplicates(local: tuple[Store, int], fake_openai: FakeOpenAI) -> None:
    store, project_id = local
    dims, tuples = _setup_tuples(store, project_id, k=2)
    fake_openai.respond_with(lambda r: {"queries": ["How can I get a refund?", "how can i get a refund"]})
    report = generate_queries(client_for(fake_openai), store, project_id, tuples, 2, context=CONTEXT, dims=dims)
    # Two tuples x two texts: same text under another tuple is another query, and a near-duplicate.
    assert report.added == 4 and report.marked_duplicates == 3


def test_suggest_values_through_the_client(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue({"values": [{"name": "refund", "description": "dup"},
                                  {"name": "payroll", "description": "salaries"}]})
    values = suggest_values(client_for(fake_openai, cache=DictCache()), CONTEXT, "intent", "", persona_dims(),
                            ["refund", "export", "tax"], n=2)
    assert [v.name for v in values] == ["payroll"]
    assert "Propose 2 values" in fake_openai.chat_requests[0].json["messages"][-1]["content"]


def test_generated_queries_schema_rejects_empty_lists() -> None:
    with pytest.raises(ValueError):
        GeneratedQueries.model_validate({"queries": []})


def test_review_grid_edits_apply_to_the_rows_on_screen(store: Store, project_id: int) -> None:
    ids = qs.add_queries(store, project_id, [qs.NewQuery(text=t) for t in ["a", "b", "c"]]).ids
    on_screen = [ids[2], ids[0]]  # e.g. a filtered page
    problems = qs.apply_review_edits(store, project_id, on_screen, {
        "0": {"status": "unrealistic"}, 1: {"text": "a, edited", "status": "kept", "similarity": 0.1},
        "5": {"status": "kept"}})
    assert problems == ["Row 6 is not on screen any more; edit it again."]
    got = {q.id: (q.text, q.status) for q in qs.get_queries(store, project_id)}
    assert got == {ids[0]: ("a, edited", "kept"), ids[1]: ("b", "new"), ids[2]: ("c", "unrealistic")}
    assert "cannot be empty" in qs.apply_review_edits(store, project_id, on_screen, {0: {"text": ""}})[0]


def test_migration_0002_downgrades_and_upgrades(store: Store, project_id: int) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from evalboard.store import alembic_config

    qs.add_dimension(store, project_id, Dimension(name="d", values=["a"]))
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    assert "dimensions" not in inspect(store.engine).get_table_names()
    assert store.get_project(project_id) is not None  # older data untouched
    store.upgrade()
    assert {"dimensions", "query_tuples", "queries", "targets", "target_runs"} <= set(
        inspect(store.engine).get_table_names())
    assert qs.list_dimensions(store, project_id) == []

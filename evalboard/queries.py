"""Synthetic queries: prompts that write them from tuples, near-duplicate marks, and export.

The method: describe the product and its users (the project context), define the dimensions
along which real queries vary, combine their values into tuples (evalboard.tuples), and only then
ask an LLM for a few queries per tuple, written the way that user would type them. Writing from
tuples, rather than asking for "100 test queries", is what keeps the set from collapsing onto the
polite, complete, average question the LLM would write on its own.

This module holds no Streamlit and no LLM client of its own: `generate_queries` and
`suggest_values` take any client with the `structured` and `map` methods of
`integrations.llm.LLMClient` (the page passes that one; tests may pass it too).

Near-duplicates (`find_near_duplicates`): each query becomes a TF-IDF vector of the character
3- to 5-grams of its words (lower-cased, punctuation dropped; sublinear tf = 1 + log tf), rows
L2-normalised, so the dot product of two rows is their cosine similarity. A query is marked as a
near-duplicate of the most similar *earlier* query when that cosine is at least
`NEAR_DUPLICATE_THRESHOLD` (0.8). Measured on hand-made pairs: case and punctuation changes and
word-order shuffles score 0.95-1.0, the same template with another order number 0.86, one word
swapped in a short query ("export invoices to csv" / "to pdf") 0.82, a typo 0.72, a paraphrase
with other words ("charged twice this month" / "charged twice in march, why") 0.56, unrelated
queries below 0.2. So 0.8 flags repeats of one query and of one template; the mark is a hint for
the reviewer (the grid shows the similarity), never a deletion.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field
from sklearn.feature_extraction.text import TfidfVectorizer

from evalboard import query_store
from evalboard.batching import BatchWriter
from evalboard.query_store import NewQuery, StoredQuery, StoredTuple
from evalboard.store import Store
from evalboard.tuples import Dimension, DimensionValue, TupleDict

QUERYGEN_FEATURE = "querygen"
SUGGEST_FEATURE = "suggest_values"
NEAR_DUPLICATE_THRESHOLD = 0.8
MAX_QUERIES_PER_TUPLE = 20

NO_CONTEXT = "(No description of the product yet.)"


# ------------------------------------------------------------------------------------- LLM schemas


class SuggestedValue(BaseModel):
    name: str = Field(description="Short name of the value, a few words at most")
    description: str = Field(description="One sentence: what a user with this value is like or asks")


class SuggestedValues(BaseModel):
    """The answer to a "suggest values" prompt."""

    values: list[SuggestedValue] = Field(min_length=1)


class GeneratedQueries(BaseModel):
    """The answer to a query-generation prompt: the queries, exactly as the user would send them."""

    queries: list[str] = Field(min_length=1)


class StructuredClient(Protocol):
    """What this module needs from an LLM client (integrations.llm.LLMClient has it)."""

    def structured(self, messages: Any, schema: type, **kwargs: Any) -> tuple[Any, Any]: ...

    def map(self, requests: Sequence[Any], fn: Any = ..., **kwargs: Any) -> list[Any]: ...


# ------------------------------------------------------------------------------------- prompts


def _context_block(context: str) -> str:
    return context.strip() or NO_CONTEXT


def _dimension_line(dim: Dimension) -> str:
    about = f" ({dim.description.strip()})" if dim.description.strip() else ""
    values = ", ".join(v.name for v in dim.values)
    return f"- {dim.name}{about}: {values}"


def suggest_values_messages(context: str, name: str, description: str = "",
                            dimensions: Sequence[Dimension] = (), existing: Sequence[str] = (),
                            n: int = 8) -> list[dict[str, str]]:
    """Messages asking for `n` candidate values of the dimension `name`.

    The system message carries the product context and the other dimensions (so values do not
    overlap them); the user message names the dimension, its description and the values it
    already has (which must not come back).
    """
    others = [d for d in dimensions if d.name != name]
    system = (
        "You help an engineer study how real users query an LLM product. Queries vary along "
        "dimensions (who asks, what they want, how they write...). You propose values for one "
        "dimension.\n\n"
        f"The product and its users:\n{_context_block(context)}\n\n"
        + ("Other dimensions already defined:\n" + "\n".join(_dimension_line(d) for d in others) + "\n\n"
           if others else "")
        + "Good values are distinct from each other, realistic for this product's users, and together "
          "cover the range that occurs in practice, including less common but real cases. Give each a "
          "short name (a few words) and a one-sentence description."
    )
    user = f"Dimension: {name.strip()}"
    if description.strip():
        user += f"\nWhat it means: {description.strip()}"
    if existing:
        user += "\nValues it already has (do not repeat them): " + ", ".join(existing)
    user += f"\nPropose {n} values."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def new_suggestions(suggested: SuggestedValues, existing: Sequence[str]) -> list[DimensionValue]:
    """The suggested values not already present (case-insensitive), without repeats or blanks."""
    seen = {e.strip().lower() for e in existing}
    out = []
    for value in suggested.values:
        name = value.name.strip()
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(DimensionValue(name=name, description=value.description.strip()))
    return out


def query_messages(context: str, dims: Sequence[Dimension], tup: TupleDict, n: int,
                   batch: int = 1) -> list[dict[str, str]]:
    """Messages asking for `n` queries written by the user the tuple describes.

    The system message holds the product context and the writing instructions (stay in the
    persona; write as they type, with typos, shorthand or fragments when their style calls for
    it; do not name the dimensions). The user message lists each dimension of the tuple with
    the dimension's description, the chosen value and that value's description. `batch` > 1
    asks for a fresh set, which also makes the request (and its cache key) different.
    """
    if not 1 <= n <= MAX_QUERIES_PER_TUPLE:
        raise ValueError(f"queries per tuple must be between 1 and {MAX_QUERIES_PER_TUPLE}, got {n}")
    system = (
        "You write test queries for an LLM product: the messages its real users would send it.\n\n"
        f"The product and its users:\n{_context_block(context)}\n\n"
        "You get a profile of one user and their situation, as values of a few dimensions. Write "
        "the queries this person would actually type, in their voice:\n"
        "- Match their expertise, mood, goal and writing style. If the profile suggests hurried, "
        "casual, non-native or frustrated writing, write that way: typos, shorthand, missing "
        "punctuation, lower case, incomplete sentences. If it suggests careful writing, write "
        "carefully.\n"
        "- Do not name the dimensions or copy their values word for word unless this user would.\n"
        "- Vary the wording, length and angle between queries; no two should be rephrasings of "
        "each other.\n"
        "- Each query stands alone, exactly as sent: no numbering, no quotes, no explanation."
    )
    by_name = {d.name: d for d in dims}
    lines = []
    for dim_name, value_name in tup.items():
        dim = by_name.get(dim_name)
        line = f"- {dim_name}"
        if dim is not None and dim.description.strip():
            line += f" ({dim.description.strip()})"
        line += f": {value_name}"
        value = next((v for v in dim.values if v.name == value_name), None) if dim is not None else None
        if value is not None and value.description.strip():
            line += f" - {value.description.strip()}"
        lines.append(line)
    user = "The user:\n" + "\n".join(lines) + f"\n\nWrite {n} {'query' if n == 1 else 'different queries'} this user would send."
    if batch > 1:
        user += f"\n(Set {batch}: write new queries, not ones an earlier set would contain.)"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_NUMBERING = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")


def clean_queries(raw: Sequence[str], n: int) -> list[str]:
    """The model's queries, trimmed: list markers ("1. ", "- ") and wrapping quotes removed,
    blanks and exact repeats dropped, at most `n` kept. Typos and case are left alone."""
    out: list[str] = []
    for text in raw:
        text = _NUMBERING.sub("", str(text)).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'\u201c":
            text = text[1:-1].strip()
        if len(text) >= 2 and text[0] == "\u201c" and text[-1] == "\u201d":
            text = text[1:-1].strip()
        if text and text not in out:
            out.append(text)
    return out[:n]


# ------------------------------------------------------------------------------------- generation


@dataclass
class GenerationReport:
    """What a generation did. `requests` counts tuples answered by the server now (a tuple whose
    answer had to be asked again counts once), `cache_hits` tuples answered from the cache;
    `cost` is what the new requests cost in $ (None when the model has no price)."""

    tuples: int = 0
    done: int = 0
    added: int = 0
    existing: int = 0
    requests: int = 0
    cache_hits: int = 0
    cost: float | None = None
    failed: list[tuple[int, str]] = field(default_factory=list)
    cancelled: int = 0
    marked_duplicates: int = 0

    def summary(self) -> str:
        parts = [f"{self.added} new queries from {self.done} of {self.tuples} tuples"]
        if self.existing:
            parts.append(f"{self.existing} already stored")
        parts.append(f"{self.requests} LLM requests, {self.cache_hits} answered from the cache")
        if self.cost is not None:
            parts.append(f"${self.cost:.4f}")
        if self.failed:
            parts.append(f"{len(self.failed)} tuples failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} not done (cancelled)")
        if self.marked_duplicates:
            parts.append(f"{self.marked_duplicates} near-duplicates marked")
        return "; ".join(parts) + "."


def generate_queries(client: StructuredClient, store: Store, project_id: int,
                     tuples: Sequence[StoredTuple], n: int, *, context: str,
                     dims: Sequence[Dimension], batch: int = 1, model: str | None = None,
                     concurrency: int | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None,
                     mark_duplicates: bool = True) -> GenerationReport:
    """Ask the LLM for `n` queries per tuple and store them as they arrive.

    Calls run concurrently through `client.map` (its concurrency limit, budget, retries and
    cancel apply). Validated answers go to one writer thread that stores whatever has arrived in
    one transaction, so the LLM calls never wait for the database and a cancelled or failed
    generation keeps what was done. Answers also land in the client's cache: generating the
    same tuples with the same `batch` again costs no request and adds nothing twice (an answer
    still on its way when the caller cancels is not stored now, but costs nothing next time).
    A tuple whose call fails (after the client's retries, or a malformed answer asked again and
    still wrong) is listed in `failed` with the reason. Near-duplicates are marked afterwards.
    """
    if not 1 <= n <= MAX_QUERIES_PER_TUPLE:
        raise ValueError(f"queries per tuple must be between 1 and {MAX_QUERIES_PER_TUPLE}, got {n}")
    report = GenerationReport(tuples=len(tuples))
    if not tuples:
        return report
    def write(rows: list[NewQuery]) -> None:
        # A failed write is reported after the run; the calls stay in the LLM cache.
        added = query_store.add_queries(store, project_id, rows)
        report.added += added.added
        report.existing += added.existing

    def run_one(item: StoredTuple) -> Any:
        answer, result = client.structured(query_messages(context, dims, item.values, n, batch),
                                           GeneratedQueries, feature=QUERYGEN_FEATURE, model=model)
        writer.put_many(NewQuery(text=t, tuple_id=item.id, dimensions=item.values, model=result.model)
                        for t in clean_queries(answer.queries, n))
        return result

    with BatchWriter(write, name="querygen-writer") as writer:
        results = client.map(list(tuples), run_one, concurrency=concurrency, on_progress=on_progress,
                             cancel=cancel)
    costs: list[float] = []
    for item, res in zip(tuples, results):
        if res.status == "ok":
            report.done += 1
            if getattr(res.value, "cached", False):
                report.cache_hits += 1
            else:
                report.requests += 1
                if res.value.cost is not None:
                    costs.append(res.value.cost)
        elif res.status == "error":
            report.failed.append((item.id, str(res.error)))
        else:
            report.cancelled += 1
    report.cost = sum(costs) if costs else (0.0 if report.requests == 0 else None)
    if mark_duplicates and report.added:
        report.marked_duplicates = mark_near_duplicates(store, project_id)
    return report


def suggest_values(client: StructuredClient, context: str, dim_name: str, description: str = "",
                   dimensions: Sequence[Dimension] = (), existing: Sequence[str] = (),
                   n: int = 8, model: str | None = None) -> list[DimensionValue]:
    """Candidate values for a dimension from the LLM, minus those it already has."""
    answer, _ = client.structured(
        suggest_values_messages(context, dim_name, description, dimensions, existing, n),
        SuggestedValues, feature=SUGGEST_FEATURE, model=model)
    return new_suggestions(answer, existing)


# ------------------------------------------------------------------------------------- near-duplicates


def normalise(text: str) -> str:
    """Lower case, words only (punctuation and extra spaces dropped)."""
    return " ".join(re.findall(r"\w+", text.lower()))


def find_near_duplicates(texts: Sequence[str], threshold: float = NEAR_DUPLICATE_THRESHOLD,
                         chunk: int = 500) -> list[tuple[int, float] | None]:
    """For each text, (index of the most similar earlier text, cosine) when that cosine is at
    least `threshold`, else None. See the module docstring for the vectors and the threshold.

    Similarities are computed `chunk` rows at a time against all earlier rows, so memory stays
    at chunk x len(texts) floats.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"the near-duplicate threshold must be in (0, 1], got {threshold}")
    marks: list[tuple[int, float] | None] = [None] * len(texts)
    if len(texts) < 2:
        return marks
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                 dtype=np.float32)
    try:
        matrix = vectorizer.fit_transform([normalise(t) for t in texts])
    except ValueError:  # no n-grams at all (every text empty or punctuation)
        return marks
    for start in range(0, len(texts), chunk):
        stop = min(start + chunk, len(texts))
        sims = (matrix[start:stop] @ matrix[:stop].T).toarray()
        for r in range(stop - start):
            i = start + r
            if i == 0:
                continue
            earlier = sims[r, :i]
            j = int(np.argmax(earlier))
            # float32 sums can land a hair above 1 for identical rows
            if earlier[j] >= threshold - 1e-6:
                marks[i] = (j, min(1.0, float(earlier[j])))
    return marks


def mark_near_duplicates(store: Store, project_id: int,
                         threshold: float = NEAR_DUPLICATE_THRESHOLD) -> int:
    """Mark every new or kept query of the project that repeats an earlier one; clear marks that
    no longer hold. Discarded and unrealistic queries take no part. Returns how many are marked."""
    items = query_store.get_queries(store, project_id, ["new", "kept"])
    found = find_near_duplicates([q.text for q in items], threshold)
    marks: dict[int, tuple[int, float] | None] = {}
    for query, mark in zip(items, found):
        new = None if mark is None else (items[mark[0]].id, round(mark[1], 3))
        if (query.duplicate_of, query.similarity) != ((new[0], new[1]) if new else (None, None)):
            marks[query.id] = new
    # Queries now outside the pool (discarded, flagged) lose any old mark.
    for query in query_store.get_queries(store, project_id, ["discarded", "unrealistic"], duplicates_only=True):
        marks[query.id] = None
    if marks:
        query_store.set_duplicates(store, project_id, marks)
    return sum(1 for m in found if m is not None)


# ------------------------------------------------------------------------------------- values text


def parse_values_text(text: str) -> list[DimensionValue]:
    """Values typed one per line, optionally `name: description` (split at the first ": ", so a
    value such as 10:30 keeps its colon). Raises ValueError naming every bad line."""
    values: list[DimensionValue] = []
    seen: dict[str, int] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, description = line.partition(": ")
        name = name.strip()
        if not name:
            problems.append(f"line {number}: the value name is empty")
            continue
        if name.lower() in seen:
            problems.append(f"line {number}: '{name}' repeats line {seen[name.lower()]}")
            continue
        seen[name.lower()] = number
        values.append(DimensionValue(name=name, description=description.strip() if sep else ""))
    if problems:
        raise ValueError("; ".join(problems))
    if not values:
        raise ValueError("give at least one value, one per line")
    return values


def values_text(values: Sequence[DimensionValue]) -> str:
    """The inverse of `parse_values_text`."""
    return "\n".join(f"{v.name}: {v.description}" if v.description else v.name for v in values)


# ------------------------------------------------------------------------------------- export


def export_queries(items: Sequence[StoredQuery], fmt: Literal["csv", "jsonl"],
                   dims: Sequence[str] = ()) -> bytes:
    """Queries with their tuples as CSV (one column per dimension) or JSONL (a `dimensions`
    object per line). UTF-8; CSV quoting handles commas, quotes and newlines in queries."""
    names = list(dims) or list(dict.fromkeys(k for q in items for k in (q.dimensions or {})))
    if fmt == "jsonl":
        lines = [json.dumps({"id": q.id, "query": q.text, "status": q.status,
                             "dimensions": q.dimensions or {}, "tuple_id": q.tuple_id,
                             "original_text": q.original_text, "duplicate_of": q.duplicate_of,
                             "model": q.model, "origin": q.origin}, ensure_ascii=False)
                 for q in items]
        return ("\n".join(lines) + ("\n" if lines else "")).encode()
    if fmt != "csv":
        raise ValueError(f"unknown export format '{fmt}' (use csv or jsonl)")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "query", "status", *names, "tuple_id", "original_text", "duplicate_of",
                     "model", "origin"])
    for q in items:
        dims_of = q.dimensions or {}
        writer.writerow([q.id, q.text, q.status, *[dims_of.get(n, "") for n in names], q.tuple_id or "",
                         q.original_text, q.duplicate_of or "", q.model or "", q.origin])
    return buffer.getvalue().encode()

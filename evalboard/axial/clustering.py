"""Clustering first-failure notes into proposed failure modes: offline, with an LLM, or by hand.

Every method ends in the same place: a clustering run stored in `cluster_runs` with its method,
its parameters, the notes it saw and its proposals (name, definition, what counts, what does not,
member notes). The run is what the review works on, so proposals survive reloads and a second
person can pick up the review.

Offline method (`cluster_offline`), no LLM needed:

1. vectorise: TF-IDF of word unigrams (lower-cased, English stop words dropped, sublinear
   tf = 1 + log tf, terms in fewer than 2 notes dropped once there are 50 notes), rows
   L2-normalised; then LSA (truncated SVD to `LSA_DIMS` dimensions, rows normalised again), which
   folds words that occur in the same contexts onto shared directions. When the caller passes
   embedding vectors (from the configured endpoint), those are used instead, L2-normalised.
2. cluster: k-means; k is chosen in `k_range` by stability (`choose_k`): the k whose partition
   comes back most alike when k-means is fitted on different random subsets. Internal indices
   were tried first and rejected: silhouette, Davies-Bouldin and Calinski-Harabasz on the LSA
   vectors kept rising with k (each way of phrasing a failure forms its own tight cluster, so
   they split families), and Calinski-Harabasz on the TF-IDF vectors fell towards k = 2; on
   generated notes with 6 known families, stability reached a mean adjusted Rand index of
   about 0.66 against 0.38-0.44 for those (benchmarks/bench_axial.py).
3. label: each cluster's top terms are the words whose mean TF-IDF weight in the cluster exceeds
   their mean over all notes the most; its most typical note is the member with the highest
   cosine similarity to the cluster's mean vector.

LLM method (`cluster_with_llm`): the notes (with the annotators' own tentative mode names and
the project description) go to the model in batches that fit `max_chars`; each batch answers
with modes (name, definition, includes, excludes) and the mode of every note. With more than one
batch, a merge prompt maps every batch's modes onto one final list. Answers are structured
(pydantic schemas) and cached by the client, so the same notes cost nothing the second time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sqlalchemy import insert, select, update

from evalboard.coding import annotation_table
from evalboard.db import cluster_runs, utcnow
from evalboard.store import Store, StoreError

LSA_DIMS = 20
DEFAULT_K_RANGE = (2, 12)
STABILITY_PAIRS = 4
STABILITY_SAMPLE = 1500
LLM_FEATURE = "axial_clustering"
LLM_MAX_CHARS = 12_000  # note text per prompt: ~3k tokens, leaving room for a long answer
LLM_MAX_NOTES = 150  # per prompt: every note needs a line in the answer too
UNASSIGNED_NAME = "(none of these)"

Method = Literal["llm", "offline", "manual"]


# -- the notes -----------------------------------------------------------------------------

def failure_notes(store: Store, project_id: int, *, round_id: int | None = None,
                  annotators: Sequence[str] = ()) -> pd.DataFrame:
    """The first-failure notes to cluster: one row per failed annotation with a non-empty note.

    Columns: annotation_id, trace_id, round_id, annotator, origin ("human", "import:...", ...),
    note, modes (names picked in open coding), failure_step. Sorted by annotation id, so the same labels always give the same order (and
    the same LLM requests, which the cache then answers).
    """
    df = annotation_table(store, project_id, round_id=round_id)
    if annotators:
        df = df[df["annotator"].isin(list(annotators))]
    df = df[(df["verdict"] == "fail") & (df["note"].str.strip() != "")]
    cols = ["annotation_id", "trace_id", "round_id", "annotator", "origin", "note", "modes", "failure_step"]
    return df[cols].sort_values("annotation_id").reset_index(drop=True)


# -- proposals and runs --------------------------------------------------------------------

class Proposal(BaseModel):
    """One proposed failure mode of a run, and the notes (annotation ids) it holds."""

    key: str
    name: str
    definition: str = ""
    includes: str = ""
    excludes: str = ""
    members: list[int] = Field(default_factory=list)
    status: Literal["proposed", "accepted", "discarded"] = "proposed"
    top_terms: list[str] = Field(default_factory=list)
    typical: int | None = None  # annotation id of the most typical note
    mode_id: int | None = None  # the failure mode it became, once accepted


class NoteRef(BaseModel):
    annotation_id: int
    trace_id: int
    annotator: str
    note: str
    round_id: int | None = None


class ClusterRun(BaseModel):
    id: int
    project_id: int
    round_id: int | None
    method: str
    params: dict[str, Any]
    notes: list[NoteRef]
    proposals: list[Proposal]
    unassigned: list[int]
    created_by: str
    created_at: datetime | None = None

    def proposal(self, key: str) -> Proposal:
        for p in self.proposals:
            if p.key == key:
                return p
        raise StoreError(f"Run {self.id} has no proposal '{key}'.")

    def note_text(self) -> dict[int, str]:
        return {n.annotation_id: n.note for n in self.notes}

    def next_key(self) -> str:
        used = [int(p.key[1:]) for p in self.proposals if re.fullmatch(r"p\d+", p.key)]
        return f"p{max(used, default=0) + 1}"


def _run_from_row(row: Any) -> ClusterRun:
    return ClusterRun(id=row.id, project_id=row.project_id, round_id=row.round_id, method=row.method,
                      params=row.params or {}, notes=[NoteRef(**n) for n in row.notes or []],
                      proposals=[Proposal(**p) for p in row.proposals or []],
                      unassigned=list(row.unassigned or []), created_by=row.created_by,
                      created_at=row.created_at)


def save_run(store: Store, project_id: int, method: Method, notes: pd.DataFrame,
             proposals: Sequence[Proposal], *, params: dict[str, Any] | None = None,
             round_id: int | None = None, created_by: str = "") -> ClusterRun:
    """Store a clustering run. Notes no proposal holds are kept as the run's unassigned notes."""
    refs = [NoteRef(annotation_id=int(r.annotation_id), trace_id=int(r.trace_id),
                    annotator=str(r.annotator), note=str(r.note),
                    round_id=_int_or_none(getattr(r, "round_id", None))) for r in notes.itertuples()]
    placed = {m for p in proposals for m in p.members}
    unassigned = [n.annotation_id for n in refs if n.annotation_id not in placed]
    with store.engine.begin() as conn:
        rid = conn.execute(insert(cluster_runs).values(
            project_id=project_id, round_id=round_id, method=method, params=params or {},
            notes=[n.model_dump() for n in refs], proposals=[p.model_dump() for p in proposals],
            unassigned=unassigned, created_by=created_by)).inserted_primary_key[0]
    return get_run(store, rid)  # type: ignore[return-value]


def _int_or_none(value: Any) -> int | None:
    return None if value is None or (isinstance(value, float) and value != value) else int(value)


def get_run(store: Store, run_id: int) -> ClusterRun | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(cluster_runs).where(cluster_runs.c.id == run_id)).first()
    return None if row is None else _run_from_row(row)


def list_runs(store: Store, project_id: int) -> list[ClusterRun]:
    """The project's clustering runs, newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(cluster_runs).where(cluster_runs.c.project_id == project_id)
                            .order_by(cluster_runs.c.id.desc())).all()
    return [_run_from_row(r) for r in rows]


def write_run(conn: Any, run: ClusterRun) -> None:
    """Save a run's proposals and unassigned notes (inside the caller's transaction)."""
    conn.execute(update(cluster_runs).where(cluster_runs.c.id == run.id).values(
        proposals=[p.model_dump() for p in run.proposals], unassigned=run.unassigned,
        updated_at=utcnow()))


def lock_run(conn: Any, run_id: int) -> ClusterRun:
    """Read a run for a change, locking its row on Postgres so two reviewers' edits queue
    instead of one overwriting the other (SQLite's write lock already serialises)."""
    q = select(cluster_runs).where(cluster_runs.c.id == run_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise StoreError(f"No clustering run {run_id}.")
    return _run_from_row(row)


def manual_run(store: Store, project_id: int, notes: pd.DataFrame, *, created_by: str = "",
               round_id: int | None = None) -> ClusterRun:
    """A run for sorting notes by hand: no proposals yet, every note unassigned."""
    if notes.empty:
        raise StoreError("There are no failure notes to sort: label failed traces with a note first.")
    return save_run(store, project_id, "manual", notes, [], params={"method": "manual"},
                    round_id=round_id, created_by=created_by)


# -- offline clustering --------------------------------------------------------------------

@dataclass
class OfflineClustering:
    """What `cluster_offline` found: a label per note (0..k-1), and per cluster its top terms
    and the index of its most typical note. `scores` holds stability(k) for every k tried."""

    labels: list[int]
    k: int
    top_terms: list[list[str]]
    typical: list[int]
    scores: dict[int, float] = field(default_factory=dict)
    vectoriser: str = "tfidf"
    seconds_vectorise: float = 0.0
    seconds_cluster: float = 0.0


def vectorise(texts: Sequence[str]) -> tuple[Any, list[str]]:
    """TF-IDF matrix (rows L2-normalised) of word unigrams, and the vocabulary."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(lowercase=True, stop_words="english", sublinear_tf=True,
                          min_df=2 if len(texts) >= 50 else 1, token_pattern=r"(?u)\b\w[\w\-]*\b")
    try:
        matrix = vec.fit_transform(texts)
    except ValueError:  # every word was a stop word (notes such as "no", "wrong")
        vec = TfidfVectorizer(lowercase=True, sublinear_tf=True, min_df=1)
        matrix = vec.fit_transform(texts)
    return matrix, list(vec.get_feature_names_out())


def lsa(matrix: Any, dims: int = LSA_DIMS, seed: int = 0) -> np.ndarray:
    """Rows projected onto the top `dims` singular directions, then L2-normalised."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    dims = min(dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if dims < 2:
        return normalize(matrix.toarray())
    return normalize(TruncatedSVD(dims, random_state=seed).fit_transform(matrix))


def choose_k(points: np.ndarray, k_range: tuple[int, int], seed: int = 0, *,
             pairs: int = STABILITY_PAIRS, sample: int = STABILITY_SAMPLE
             ) -> tuple[int, np.ndarray, dict[int, float]]:
    """The number of clusters whose k-means partition is most reproducible, and that partition.

    For each k: draw `pairs` pairs of random 70% subsets of (a sample of at most `sample` of)
    the points, fit k-means on each subset, label every sampled point with both fits, and score
    their agreement by the adjusted Rand index; stability(k) is the mean. The true number of
    families gives partitions that come back whatever the subset; too many clusters split
    families at random places, too few merge them differently each time. Ties go to the
    smaller k. The returned labels come from k-means on all points (8 restarts).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    n = points.shape[0]
    distinct = len({tuple(np.round(p, 6)) for p in points})
    low, high = k_range
    high = min(high, distinct - 1, max(2, n // 3))
    low = max(2, min(low, high))
    if distinct < 3 or high < 2:
        return 1, np.zeros(n, dtype=int), {}
    rng = np.random.default_rng(seed)
    pool = points if n <= sample else points[rng.choice(n, sample, replace=False)]
    m = pool.shape[0]
    size = max(high + 1, int(0.7 * m))
    scores: dict[int, float] = {}
    for k in range(low, high + 1):
        agreement = []
        for r in range(pairs):
            a = rng.choice(m, size, replace=False)
            b = rng.choice(m, size, replace=False)
            fit_a = KMeans(k, n_init=2, random_state=seed + 2 * r).fit(pool[a])
            fit_b = KMeans(k, n_init=2, random_state=seed + 2 * r + 1).fit(pool[b])
            agreement.append(adjusted_rand_score(fit_a.predict(pool), fit_b.predict(pool)))
        scores[k] = float(np.mean(agreement))
    chosen = max(scores, key=lambda k: (round(scores[k], 6), -k))
    labels = KMeans(chosen, n_init=8, random_state=seed).fit_predict(points)
    return chosen, labels, scores


def describe_clusters(matrix: Any, vocabulary: Sequence[str], points: np.ndarray,
                      labels: np.ndarray, k: int, n_terms: int = 5) -> tuple[list[list[str]], list[int]]:
    """Per cluster: top terms (largest excess of the cluster's mean TF-IDF weight over the mean
    of all notes) and the index of the member closest in cosine to the cluster's mean."""
    overall = np.asarray(matrix.mean(axis=0)).ravel()
    terms, typical = [], []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        mean = np.asarray(matrix[idx].mean(axis=0)).ravel()
        order = np.argsort(-(mean - overall))
        terms.append([vocabulary[i] for i in order[:n_terms] if mean[i] > 0])
        centre = points[idx].mean(axis=0)
        norm = np.linalg.norm(centre)
        sims = points[idx] @ (centre / norm) if norm else np.zeros(len(idx))
        typical.append(int(idx[int(np.argmax(sims))]))
    return terms, typical


def cluster_offline(texts: Sequence[str], *, k: int | None = None,
                    k_range: tuple[int, int] = DEFAULT_K_RANGE, vectors: Any = None,
                    seed: int = 0) -> OfflineClustering:
    """Cluster notes without an LLM (see the module docstring for the method).

    `k` fixes the number of clusters; otherwise it is chosen in `k_range` by stability.
    `vectors` (one row per text, e.g. embeddings) replace the TF-IDF/LSA vectors for clustering;
    top terms still come from TF-IDF.
    """
    import time

    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("cluster_offline needs at least one note")
    if k is not None and not 1 <= k <= len(texts):
        raise ValueError(f"k must be between 1 and the number of notes ({len(texts)}), got {k}")
    t0 = time.perf_counter()
    matrix, vocabulary = vectorise(texts)
    if vectors is not None:
        points = normalize(np.asarray(vectors, dtype=float))
        if points.shape[0] != len(texts):
            raise ValueError(f"vectors has {points.shape[0]} rows for {len(texts)} notes")
        kind = "embedding"
    else:
        points = lsa(matrix, seed=seed)
        kind = "tfidf"
    t1 = time.perf_counter()
    scores: dict[int, float] = {}
    if len(texts) < 3 or k == 1:
        chosen, labels = 1, np.zeros(len(texts), dtype=int)
    elif k is not None:
        chosen, labels = k, KMeans(k, n_init=8, random_state=seed).fit_predict(points)
    else:
        chosen, labels, scores = choose_k(points, k_range, seed)
    # Relabel so cluster 0 is the largest: proposals then come biggest first.
    sizes = np.bincount(labels, minlength=chosen)
    order = np.argsort(-sizes, kind="stable")
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    labels = remap[labels]
    terms, typical = describe_clusters(matrix, vocabulary, points, labels, chosen)
    t2 = time.perf_counter()
    return OfflineClustering(labels=[int(x) for x in labels], k=chosen, top_terms=terms,
                             typical=typical, scores=scores, vectoriser=kind,
                             seconds_vectorise=t1 - t0, seconds_cluster=t2 - t1)


def offline_proposals(notes: pd.DataFrame, result: OfflineClustering) -> list[Proposal]:
    """Proposals from an offline clustering: named by top terms, defined by the typical note."""
    ids = [int(a) for a in notes["annotation_id"]]
    texts = list(notes["note"])
    proposals = []
    for c in range(result.k):
        members = [ids[i] for i, lab in enumerate(result.labels) if lab == c]
        terms = result.top_terms[c]
        typical = result.typical[c]
        name = " / ".join(terms[:3]) or f"cluster {c + 1}"
        proposals.append(Proposal(
            key=f"p{c + 1}", name=name[:200],
            definition=f"Notes about {', '.join(terms) or 'this'}; typical: \"{texts[typical]}\"",
            includes=f"e.g. \"{texts[typical]}\"", members=members, top_terms=terms,
            typical=ids[typical]))
    return proposals


def run_offline(store: Store, project_id: int, notes: pd.DataFrame, *, k: int | None = None,
                k_range: tuple[int, int] = DEFAULT_K_RANGE, vectors: Any = None,
                embedding_model: str | None = None, round_id: int | None = None,
                created_by: str = "", seed: int = 0) -> ClusterRun:
    """Cluster the notes offline and store the run (see `cluster_offline`)."""
    if notes.empty:
        raise StoreError("There are no failure notes to cluster: label failed traces with a note first.")
    result = cluster_offline(list(notes["note"]), k=k, k_range=k_range, vectors=vectors, seed=seed)
    params = {"vectoriser": result.vectoriser, "embedding_model": embedding_model,
              "k": result.k, "k_fixed": k is not None, "k_range": list(k_range),
              "stability": {str(a): round(b, 3) for a, b in result.scores.items()},
              "lsa_dims": LSA_DIMS if vectors is None else None, "seed": seed, "notes": len(notes)}
    return save_run(store, project_id, "offline", notes, offline_proposals(notes, result),
                    params=params, round_id=round_id, created_by=created_by)


def embed_notes(client: Any, texts: Sequence[str], *, batch: int = 256) -> np.ndarray:
    """Embedding vectors for notes from the configured endpoint, `batch` texts per request."""
    rows: list[list[float]] = []
    for i in range(0, len(texts), batch):
        rows.extend(client.embed(list(texts[i:i + batch])))
    return np.asarray(rows, dtype=float)


# -- LLM clustering ------------------------------------------------------------------------

class StructuredClient(Protocol):
    """What the LLM path needs (integrations.llm.LLMClient has it)."""

    def structured(self, messages: Any, schema: type, **kwargs: Any) -> tuple[Any, Any]: ...

    def map(self, requests: Sequence[Any], fn: Any = ..., **kwargs: Any) -> list[Any]: ...


class ProposedMode(BaseModel):
    name: str = Field(description="Short name, 2-5 words, e.g. 'outdated version'")
    definition: str = Field(description="One or two sentences: the specific failure, observable in a trace")
    includes: str = Field(description="What counts as this mode (typical cases)")
    excludes: str = Field(description="What does not count, especially near-misses that belong to another mode")


class NoteAssignment(BaseModel):
    note: str = Field(description="The note's id, e.g. 'N3'")
    mode: str = Field(description=f"The name of one proposed mode, or '{UNASSIGNED_NAME}'")


class ClusteringAnswer(BaseModel):
    """The answer to one batch: the modes, and the mode of every note in the batch."""

    modes: list[ProposedMode] = Field(min_length=1)
    assignments: list[NoteAssignment]


class ModeMapping(BaseModel):
    batch_mode: str = Field(description="A batch mode's id, e.g. 'B2.3'")
    mode: str = Field(description="The name of the final mode it belongs to")


class MergeAnswer(BaseModel):
    """The answer to the merge prompt: the final modes, and where each batch mode went."""

    modes: list[ProposedMode] = Field(min_length=1)
    mapping: list[ModeMapping]


SYSTEM = (
    "You help an engineer do axial coding for error analysis of an LLM product: grouping the "
    "free-text notes people wrote about the first thing that went wrong in failed traces into a "
    "small set of failure modes.\n\nThe product and its users:\n{context}\n\n"
    "Good failure modes are specific and observable in a trace (\"cites a page that does not "
    "support the claim\", not \"bad answer\"), do not overlap, and are few: merge notes that "
    "describe the same failure in other words. Give each a short name (2-5 words), a definition, "
    "what counts, and what does not count. Assign every note to exactly one mode by its id, or to "
    f"'{UNASSIGNED_NAME}' when it describes no failure of the product."
)


def batch_notes(notes: pd.DataFrame, *, max_chars: int = LLM_MAX_CHARS,
                max_notes: int = LLM_MAX_NOTES) -> list[pd.DataFrame]:
    """Split notes into consecutive batches of at most `max_notes` notes and `max_chars`
    characters of note text (a longer single note gets a batch of its own)."""
    batches: list[pd.DataFrame] = []
    start, size = 0, 0
    for i, note in enumerate(notes["note"]):
        length = len(str(note)) + 12
        if i > start and (size + length > max_chars or i - start >= max_notes):
            batches.append(notes.iloc[start:i])
            start, size = i, 0
        size += length
    if len(notes) > start:
        batches.append(notes.iloc[start:])
    return batches


def batch_messages(context: str, batch: pd.DataFrame, offset: int) -> list[dict[str, str]]:
    """One batch's prompt: the notes as `N<i>: <note>` lines, with the mode names the annotator
    already picked (tentative names coined during open coding) in brackets."""
    lines = []
    for i, r in enumerate(batch.itertuples(), start=offset + 1):
        hint = f"  [annotator's tentative modes: {', '.join(r.modes)}]" if len(r.modes) else ""
        lines.append(f"N{i}: {' '.join(str(r.note).split())}{hint}")
    user = ("First-failure notes from failed traces:\n" + "\n".join(lines)
            + "\n\nPropose the failure modes and assign every note.")
    return [{"role": "system", "content": SYSTEM.format(context=context.strip() or "(no description)")},
            {"role": "user", "content": user}]


def merge_messages(context: str, batch_modes: list[tuple[str, ProposedMode, int]]) -> list[dict[str, str]]:
    """The merge prompt: every batch's modes (id, name, definition, note count)."""
    lines = [f"{bid}: {m.name} - {m.definition} ({n} notes)" for bid, m, n in batch_modes]
    user = ("The notes were too many for one request, so each batch proposed its own modes:\n"
            + "\n".join(lines)
            + "\n\nMerge them into one final list of failure modes (the same failure named "
              "differently becomes one mode), and map every batch mode id to a final mode name.")
    return [{"role": "system", "content": SYSTEM.format(context=context.strip() or "(no description)")},
            {"role": "user", "content": user}]


def _norm(name: str) -> str:
    return " ".join(str(name).lower().split())


@dataclass
class LLMClustering:
    proposals: list[Proposal]
    batches: int
    unassigned: list[int]
    requests: int


def cluster_with_llm(client: StructuredClient, notes: pd.DataFrame, *, context: str = "",
                     max_chars: int = LLM_MAX_CHARS, max_notes: int = LLM_MAX_NOTES,
                     on_progress: Callable[[int, int], None] | None = None) -> LLMClustering:
    """Propose modes and assign notes with an LLM (batched and merged; see module docstring).

    Notes the model does not assign, or assigns to a mode it did not propose, end up
    unassigned: the reviewer places them by hand. Raises what the client raises when a call
    fails for good (the page shows it); nothing is stored then.
    """
    if notes.empty:
        raise ValueError("cluster_with_llm needs at least one note")
    batches = batch_notes(notes, max_chars=max_chars, max_notes=max_notes)
    offsets = np.cumsum([0] + [len(b) for b in batches[:-1]])
    requests = [{"messages": batch_messages(context, b, int(o))} for b, o in zip(batches, offsets, strict=True)]
    results = client.map(requests, "structured", schema=ClusteringAnswer, feature=LLM_FEATURE,
                         temperature=0, on_progress=on_progress)
    answers: list[ClusteringAnswer] = []
    for i, r in enumerate(results):
        if not r.ok:
            raise RuntimeError(f"clustering batch {i + 1} of {len(batches)} failed: {r.error}") from r.error
        answers.append(r.value[0])

    ids = [int(a) for a in notes["annotation_id"]]
    # note id ("N7") -> (batch, normalised batch-mode name)
    by_note: dict[int, tuple[int, str]] = {}
    batch_modes: list[tuple[str, ProposedMode, int]] = []
    for b, (answer, offset, batch) in enumerate(zip(answers, offsets, batches, strict=True)):
        known = {_norm(m.name) for m in answer.modes}
        for a in answer.assignments:
            match = re.fullmatch(r"\s*N?(\d+)\s*", a.note)
            if not match:
                continue
            n = int(match.group(1)) - 1
            if offset <= n < offset + len(batch) and _norm(a.mode) in known:
                by_note.setdefault(n, (b, _norm(a.mode)))
        counts = {name: sum(1 for bb, nm in by_note.values() if bb == b and nm == name) for name in known}
        for j, m in enumerate(answer.modes):
            batch_modes.append((f"B{b + 1}.{j + 1}", m, counts.get(_norm(m.name), 0)))

    request_count = len(batches)
    if len(batches) == 1:
        final = answers[0].modes
        where = {(0, _norm(m.name)): _norm(m.name) for m in final}
    else:
        merged, _ = client.structured(merge_messages(context, batch_modes), MergeAnswer,
                                      feature=LLM_FEATURE, temperature=0)
        request_count += 1
        final = merged.modes
        finals = {_norm(m.name) for m in final}
        mapped = {mm.batch_mode.strip(): _norm(mm.mode) for mm in merged.mapping if _norm(mm.mode) in finals}
        where = {}
        for bid, m, _ in batch_modes:
            b = int(bid[1:].split(".")[0]) - 1
            # A batch mode the merge left out keeps its place when a final mode has its name.
            target = mapped.get(bid) or (_norm(m.name) if _norm(m.name) in finals else None)
            if target:
                where[(b, _norm(m.name))] = target

    proposals: list[Proposal] = []
    index: dict[str, Proposal] = {}
    for m in final:
        key = _norm(m.name)
        if key in index or key == _norm(UNASSIGNED_NAME):
            continue
        p = Proposal(key=f"p{len(proposals) + 1}", name=" ".join(m.name.split())[:200],
                     definition=m.definition.strip(), includes=m.includes.strip(),
                     excludes=m.excludes.strip())
        proposals.append(p)
        index[key] = p
    unassigned = []
    for n, aid in enumerate(ids):
        target = where.get(by_note[n]) if n in by_note else None
        if target in index:
            index[target].members.append(aid)
        else:
            unassigned.append(aid)
    for p in proposals:
        if p.members:
            p.typical = p.members[0]
    proposals.sort(key=lambda p: -len(p.members))
    for i, p in enumerate(proposals, start=1):
        p.key = f"p{i}"
    return LLMClustering(proposals=proposals, batches=len(batches), unassigned=unassigned,
                         requests=request_count)


def run_llm(store: Store, project_id: int, notes: pd.DataFrame, client: StructuredClient, *,
            context: str = "", model: str | None = None, round_id: int | None = None,
            created_by: str = "", max_chars: int = LLM_MAX_CHARS, max_notes: int = LLM_MAX_NOTES,
            on_progress: Callable[[int, int], None] | None = None) -> ClusterRun:
    """Cluster the notes with the LLM and store the run."""
    if notes.empty:
        raise StoreError("There are no failure notes to cluster: label failed traces with a note first.")
    result = cluster_with_llm(client, notes, context=context, max_chars=max_chars,
                              max_notes=max_notes, on_progress=on_progress)
    params = {"model": model, "batches": result.batches, "requests": result.requests,
              "max_chars": max_chars, "max_notes": max_notes, "notes": len(notes),
              "unassigned": len(result.unassigned)}
    return save_run(store, project_id, "llm", notes, result.proposals, params=params,
                    round_id=round_id, created_by=created_by)


def proposals_frame(run: ClusterRun) -> pd.DataFrame:
    """One row per proposal: key, name, status, notes, top terms."""
    return pd.DataFrame([{"key": p.key, "name": p.name, "status": p.status, "notes": len(p.members),
                          "definition": p.definition, "top terms": ", ".join(p.top_terms)}
                         for p in run.proposals],
                        columns=["key", "name", "status", "notes", "definition", "top terms"])

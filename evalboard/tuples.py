"""Dimensions, exclusions and tuples: which combinations of query features to write queries for.

A *dimension* is one way user queries vary (``user_type``: admin, end user); a *tuple* picks one
value per dimension and is a plain ``dict[str, str]`` ordered as the dimensions. An *exclusion*
says a combination never occurs ("user_type=admin, expertise=beginner"): any tuple that has all
the listed dimension=value pairs is forbidden. A tuple is *allowed* when no exclusion matches it.

Generators (all deterministic for a given seed, all return allowed tuples only):

- ``full_product``: every allowed tuple. Its size before exclusions is the product of the value
  counts, ``full_product_count`` gives it without generating anything.
- ``sample_tuples``: k distinct tuples drawn uniformly from the allowed ones (small spaces are
  listed, large ones sampled by rejection, so a product of 10^20 tuples is never enumerated).
- ``pairwise_tuples``: a small set in which every *pair* of values of any two dimensions that can
  occur together appears at least once (a covering array of strength 2).

Pairwise math. With dimensions of sizes n_1 >= n_2 >= ... the n_1 * n_2 pairs of the two largest
dimensions each need their own tuple, since one tuple holds exactly one value of each dimension:
so at least n_1 * n_2 tuples are needed. With exclusions the bound becomes the largest number of
coverable pairs between any two dimensions. A pair is *coverable* when some allowed tuple contains
it; a pair that no allowed tuple contains (e.g. it is itself excluded, or every completion of it
hits an exclusion) is reported as uncoverable rather than covered.

Algorithm choice, measured on this machine (tuples produced; lower bound n_1 * n_2):

    shape                 bound   allpairspy 2.5.1   this module (seed 0)
    6 dims x 4 values       16    24 (1.50)          19 (1.19), 0.4 s
    3,5,2,7,4 values        35    35 (1.00)          35 (1.00), 0.01 s
    13 dims x 3 values       9    17                 15, 0.7 s
    10 dims x 10 values    100    172                150, 0.9 s
    20 dims x 10 values    100    219                193, 2.5 s

allpairspy is faster but larger, refuses a single dimension, cannot be seeded, and with a filter for exclusions it
stops as soon as one row adds no new pair, leaving coverable pairs uncovered (seen on 3 dims
with two exclusions). So this module uses its own construction: an AETG-style greedy
(``_greedy_rows``), then a local search that repeatedly drops a row and repairs the cover
(``_shrink``), keeping the smallest of a few seeded attempts (fewer for large spaces).
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field, field_validator, model_validator

TupleDict = dict[str, str]
"""A tuple: dimension name -> value name, in the order of the dimensions."""

# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class DimensionValue(BaseModel):
    """One value of a dimension, e.g. ``beginner``; the description helps the query writer."""

    name: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("a value name must not be empty")
        return name


class Dimension(BaseModel):
    """One way queries vary, with its values. ``values`` also accepts plain strings."""

    name: str
    description: str = ""
    values: list[DimensionValue] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("a dimension name must not be empty")
        return name

    @field_validator("values", mode="before")
    @classmethod
    def _strings_are_values(cls, values: object) -> object:
        if isinstance(values, list):
            return [{"name": v} if isinstance(v, str) else v for v in values]
        return values

    @model_validator(mode="after")
    def _values_unique(self) -> Dimension:
        seen: set[str] = set()
        for value in self.values:
            if value.name in seen:
                raise ValueError(f"dimension '{self.name}' lists value '{value.name}' twice")
            seen.add(value.name)
        return self

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.values]


class Exclusion(BaseModel):
    """A combination that never occurs: a tuple matching *all* of ``conditions`` is forbidden.

    ``conditions`` maps dimension name -> value name. One condition bans a value outright;
    two or more ban the combination only.
    """

    conditions: dict[str, str] = Field(min_length=1)

    @classmethod
    def parse(cls, text: str, dims: Sequence[Dimension] | None = None) -> Exclusion:
        """Parse ``"user_type=admin, expertise=beginner"``; with ``dims``, check every name.

        Raises ValueError naming the part that is wrong (no ``=``, a dimension given twice,
        an unknown dimension or value, with a close match suggested when there is one).
        """
        conditions: dict[str, str] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"'{part}' is not of the form dimension=value")
            dim, _, value = part.partition("=")
            dim, value = dim.strip(), value.strip()
            if not dim or not value:
                raise ValueError(f"'{part}' is not of the form dimension=value")
            if dim in conditions:
                raise ValueError(f"dimension '{dim}' appears twice in '{text.strip()}'")
            conditions[dim] = value
        if not conditions:
            raise ValueError("an exclusion needs at least one dimension=value pair")
        exclusion = cls(conditions=conditions)
        if dims is not None:
            exclusion.check(dims)
        return exclusion

    def check(self, dims: Sequence[Dimension]) -> None:
        """Raise ValueError if a dimension or value named here is not defined in ``dims``."""
        by_name = {d.name: d for d in dims}
        for dim, value in self.conditions.items():
            problem = _value_problem(by_name, dim, value)
            if problem:
                raise ValueError(f"exclusion '{self}': {problem}")

    def matches(self, tup: TupleDict) -> bool:
        """True when ``tup`` has every dimension=value pair of this exclusion."""
        return all(tup.get(dim) == value for dim, value in self.conditions.items())

    def __str__(self) -> str:
        return ", ".join(f"{dim}={value}" for dim, value in self.conditions.items())


def parse_exclusions(text: str, dims: Sequence[Dimension]) -> list[Exclusion]:
    """Parse one exclusion per line (blank lines and lines starting with ``#`` are skipped).

    All bad lines are reported together in one ValueError ("line 2: unknown dimension ...");
    nothing is dropped silently, since a lost exclusion would let forbidden tuples through.
    """
    exclusions: list[Exclusion] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            exclusions.append(Exclusion.parse(line, dims))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if problems:
        raise ValueError("; ".join(problems))
    return exclusions


class Pair(NamedTuple):
    """Two values of two different dimensions, first dimension first in dimension order."""

    dim_a: str
    value_a: str
    dim_b: str
    value_b: str

    def __str__(self) -> str:
        return f"{self.dim_a}={self.value_a} & {self.dim_b}={self.value_b}"


class CoverageReport(BaseModel):
    """How well a set of tuples covers the value pairs.

    ``total`` counts coverable pairs (those some allowed tuple contains); ``covered`` counts
    those present in the tuples; ``missing`` lists the rest. ``uncoverable`` lists pairs that no
    allowed tuple can contain, which therefore do not count. ``excluded_tuples`` holds the
    positions of given tuples that break an exclusion (their pairs are not counted).
    """

    covered: int
    total: int
    missing: list[Pair]
    uncoverable: list[Pair]
    excluded_tuples: list[int]

    @property
    def ratio(self) -> float:
        return self.covered / self.total if self.total else 1.0

    @property
    def complete(self) -> bool:
        return self.covered == self.total and not self.excluded_tuples


class TupleSample(BaseModel):
    """Result of ``sample_tuples``. ``exhausted`` is True when fewer allowed tuples exist than
    were requested: then ``tuples`` holds every allowed tuple (in random order) and ``note``
    says so in words for the UI."""

    tuples: list[TupleDict]
    requested: int
    exhausted: bool = False
    note: str = ""


class ParsedTuples(BaseModel):
    """Result of ``parse_tuples_file``: good rows kept, one message per bad row."""

    tuples: list[TupleDict]
    errors: list[str]


# ---------------------------------------------------------------------------------------------
# Index form shared by the generators
# ---------------------------------------------------------------------------------------------


def _value_problem(by_name: dict[str, Dimension], dim: str, value: str) -> str | None:
    """Why ``dim=value`` is not defined, with a close match suggested; None when it is fine."""
    if dim not in by_name:
        return f"unknown dimension '{dim}'{_suggest(dim, by_name)}"
    names = by_name[dim].value_names
    if value not in names:
        return f"{dim}='{value}' is not a value of dimension '{dim}'{_suggest(value, names)}"
    return None


def _suggest(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = lowered.get(word.lower()) or next(iter(difflib.get_close_matches(word, choices, 1)), None)
    return f" (did you mean '{close}'?)" if close else f" (known: {', '.join(choices)})"


def _check_dims(dims: Sequence[Dimension]) -> None:
    if not dims:
        raise ValueError("define at least one dimension")
    seen: set[str] = set()
    for dim in dims:
        if dim.name in seen:
            raise ValueError(f"dimension '{dim.name}' is defined twice")
        seen.add(dim.name)


class _Space:
    """Dimensions and exclusions with values as integers: value j of dimension i is ``j``.

    A row is a list with one value index per dimension (``None`` while unassigned).
    Exclusions with one condition shrink ``domains``; longer ones become ``rules``, tuples of
    (dimension, value) pairs, indexed by each dimension they mention.
    """

    def __init__(self, dims: Sequence[Dimension], exclusions: Iterable[Exclusion] = ()):
        _check_dims(dims)
        self.dims = list(dims)
        self.names = [d.name for d in dims]
        self.values = [d.value_names for d in dims]
        self.k = len(dims)
        self.dim_index = {name: i for i, name in enumerate(self.names)}
        self.value_index = [{v: j for j, v in enumerate(vals)} for vals in self.values]
        banned: list[set[int]] = [set() for _ in dims]
        rules: set[tuple[tuple[int, int], ...]] = set()
        for exclusion in exclusions:
            exclusion.check(dims)
            rule = tuple(
                sorted((self.dim_index[d], self.value_index[self.dim_index[d]][v])
                       for d, v in exclusion.conditions.items())
            )
            if len(rule) == 1:
                banned[rule[0][0]].add(rule[0][1])
            else:
                rules.add(rule)
        self.domains = [[j for j in range(len(vals)) if j not in banned[i]]
                        for i, vals in enumerate(self.values)]
        self.rules = sorted(rules)
        self.rules_by_dim: list[list[tuple[tuple[int, int], ...]]] = [[] for _ in dims]
        for rule in self.rules:
            for d, _ in rule:
                self.rules_by_dim[d].append(rule)
        # Dimensions that share a rule constrain each other; the rest can take any value.
        self.neighbours = [sorted({e for rule in self.rules_by_dim[d] for e, _ in rule} - {d})
                           for d in range(self.k)]
        # Search the most constrained dimensions first so dead ends show up early.
        self.search_order = sorted((d for d in range(self.k) if self.rules_by_dim[d]),
                                   key=lambda d: (-len(self.rules_by_dim[d]), d))
        self.free_dims = [d for d in range(self.k) if not self.rules_by_dim[d]]
        self.has_empty_domain = any(not dom for dom in self.domains)

    # -- allowed / forbidden -------------------------------------------------------------------

    def violates(self, row: Sequence[int | None], d: int) -> bool:
        """True when a rule mentioning dimension ``d`` is fully matched by ``row``."""
        # Plain loops: this is the innermost check of every generator, and much faster than
        # nested any()/all() generators.
        for rule in self.rules_by_dim[d]:
            for e, v in rule:
                if row[e] != v:
                    break
            else:
                return True
        return False

    def allowed(self, row: Sequence[int]) -> bool:
        if any(row[d] not in self.domains[d] for d in range(self.k)):
            return False
        return not any(all(row[e] == v for e, v in rule) for rule in self.rules)

    def complete(self, row: Sequence[int | None]) -> list[int] | None:
        """An allowed full row that agrees with the assigned entries of ``row``, or None."""
        for d, v in enumerate(row):
            if v is not None and (v not in self.domains[d] or self.violates(row, d)):
                return None
        return self.extend(row)

    def extend(self, row: Sequence[int | None]) -> list[int] | None:
        """Like ``complete``, for a row whose assigned entries are known to be allowed.

        The first solution of the search in ``_solutions``; dimensions that appear in no rule
        take their first allowed value.
        """
        if self.has_empty_domain:
            return None
        work = list(row)
        todo = [d for d in self.search_order if work[d] is None]
        found = next(self._solutions(work, todo, 0), None)
        if found is None:
            return None
        for d in self.free_dims:
            if found[d] is None:
                found[d] = self.domains[d][0]
        return found  # type: ignore[return-value]

    def iter_allowed(self) -> Iterator[list[int]]:
        """Every allowed row: each solution over the rule dimensions times every combination of
        the free ones. Unlike filtering the full product, this never walks long runs of
        forbidden tuples, so taking the first N is cheap even in a huge space."""
        if self.has_empty_domain:
            return
        free_domains = [self.domains[d] for d in self.free_dims]
        for solution in self._solutions([None] * self.k, self.search_order, 0):
            for free_values in itertools.product(*free_domains):
                for d, v in zip(self.free_dims, free_values):
                    solution[d] = v
                yield list(solution)  # type: ignore[arg-type]

    def _solutions(self, work: list[int | None], todo: list[int], pos: int) -> Iterator[list[int | None]]:
        """Depth-first search giving the dimensions ``todo[pos:]`` values that break no rule.

        Forward checking prunes early: after each choice, every unassigned dimension sharing
        a rule with it must keep at least one usable value.
        """
        if pos == len(todo):
            yield list(work)
            return
        d = todo[pos]
        for v in self.domains[d]:
            work[d] = v
            if not self.violates(work, d) and self._neighbours_ok(work, d):
                yield from self._solutions(work, todo, pos + 1)
        work[d] = None

    def _neighbours_ok(self, work: list[int | None], d: int) -> bool:
        for e in self.neighbours[d]:
            if work[e] is None:
                options = (v for v in self.domains[e] if not self._violates_with(work, e, v))
                if next(options, None) is None:
                    return False
        return True

    def _violates_with(self, work: list[int | None], e: int, v: int) -> bool:
        work[e] = v
        try:
            return self.violates(work, e)
        finally:
            work[e] = None

    # -- conversions ---------------------------------------------------------------------------

    def to_tuple(self, row: Sequence[int]) -> TupleDict:
        return {self.names[d]: self.values[d][v] for d, v in enumerate(row)}

    def to_pair(self, key: tuple[int, int, int, int]) -> Pair:
        i, a, j, b = key
        return Pair(self.names[i], self.values[i][a], self.names[j], self.values[j][b])

    def row_of(self, tup: TupleDict, where: str) -> list[int]:
        """Index form of a user-given tuple; ValueError naming ``where`` when it does not fit."""
        by_name = {d.name: d for d in self.dims}
        for dim, value in tup.items():
            problem = _value_problem(by_name, dim, value)
            if problem:
                raise ValueError(f"{where}: {problem}")
        missing = [n for n in self.names if n not in tup]
        if missing:
            raise ValueError(f"{where}: missing dimension {', '.join(repr(m) for m in missing)}")
        return [self.value_index[d][tup[name]] for d, name in enumerate(self.names)]

    def all_pairs(self) -> Iterator[tuple[int, int, int, int]]:
        """Every pair of values of two dimensions, banned values included."""
        for i, j in itertools.combinations(range(self.k), 2):
            for a in range(len(self.values[i])):
                for b in range(len(self.values[j])):
                    yield (i, a, j, b)

    def coverable_pairs(self) -> set[tuple[int, int, int, int]]:
        """Pairs (i, a, j, b), i < j, that appear in at least one allowed tuple.

        Without rules that is every pair of allowed values. With rules each pair is tried by
        ``complete``; a found row proves all of its own pairs coverable, which saves searches.
        """
        if not self.rules:
            if any(not dom for dom in self.domains):
                return set()
            return {(i, a, j, b) for i, j in itertools.combinations(range(self.k), 2)
                    for a in self.domains[i] for b in self.domains[j]}
        coverable: set[tuple[int, int, int, int]] = set()
        for i, j in itertools.combinations(range(self.k), 2):
            for a in self.domains[i]:
                for b in self.domains[j]:
                    if (i, a, j, b) in coverable:
                        continue
                    row: list[int | None] = [None] * self.k
                    row[i], row[j] = a, b
                    found = self.complete(row)
                    if found is not None:
                        coverable.update(_row_pairs(found))
        return coverable


def _row_pairs(row: Sequence[int]) -> Iterator[tuple[int, int, int, int]]:
    for i, j in itertools.combinations(range(len(row)), 2):
        yield (i, row[i], j, row[j])


# ---------------------------------------------------------------------------------------------
# Full product and sampling
# ---------------------------------------------------------------------------------------------


def full_product_count(dims: Sequence[Dimension]) -> int:
    """Number of tuples before exclusions: the product of the value counts (nothing generated)."""
    _check_dims(dims)
    return math.prod(len(d.values) for d in dims)


def full_product(dims: Sequence[Dimension], exclusions: Iterable[Exclusion] = ()) -> list[TupleDict]:
    """Every allowed tuple, in the order of the dimensions' values (the first dimension varies
    slowest). Check ``full_product_count`` first: the result grows as the product of value counts.
    """
    space = _Space(dims, exclusions)
    return [space.to_tuple(row) for row in itertools.product(*space.domains)
            if space.allowed(row)]


ENUMERATE_LIMIT = 100_000
"""Up to this many candidate tuples, sampling lists the allowed tuples and picks from them;
above it, sampling draws random tuples and drops excluded ones and repeats."""


def sample_tuples(dims: Sequence[Dimension], k: int, seed: int = 0,
                  exclusions: Iterable[Exclusion] = ()) -> TupleSample:
    """k distinct tuples drawn uniformly at random from the allowed tuples.

    Candidates are the product of each dimension's values left after one-condition exclusions
    ("intent=refund" removes a value outright). When there are at most ``ENUMERATE_LIMIT``
    candidates, the allowed ones are listed and ``random.sample`` picks k. Otherwise rejection
    sampling: draw each dimension's value uniformly, drop the draw if an exclusion matches it
    or it was drawn before. Each kept draw is uniform over the allowed tuples not yet drawn, so
    the k tuples are a uniform random k-subset, and nothing is enumerated.

    If fewer than k allowed tuples exist, returns all of them (in random order) with
    ``exhausted=True`` and a ``note``: no exception, since all the tuples is a usable answer.
    Raises ValueError if k < 0, or if random draws almost never land on an allowed tuple yet
    too many are allowed to list (exclusions forbidding nearly everything in a huge space).
    """
    if k < 0:
        raise ValueError(f"k must be 0 or more, got {k}")
    space = _Space(dims, exclusions)
    rng = random.Random(seed)
    if math.prod(len(dom) for dom in space.domains) <= ENUMERATE_LIMIT:
        return _sample_from_list(space, space.iter_allowed(), k, rng)

    chosen: dict[tuple[int, ...], None] = {}  # an insertion-ordered set: keeps the draw order
    # Enough draws to finish when at least ~1% of the candidates are allowed.
    draws, max_draws = 0, 200 * k + 20_000
    while len(chosen) < k and draws < max_draws:
        draws += 1
        row = tuple(rng.choice(dom) for dom in space.domains)
        if row not in chosen and space.allowed(row):
            chosen[row] = None
    if len(chosen) == k:
        return TupleSample(tuples=[space.to_tuple(r) for r in chosen], requested=k)
    # Draws rarely succeed: either few tuples are allowed, or k is close to their number.
    # List the allowed ones if there are not too many, else give up with a clear message.
    rows = list(itertools.islice(space.iter_allowed(), ENUMERATE_LIMIT + 1))
    if len(rows) > ENUMERATE_LIMIT:
        raise ValueError(
            f"found only {len(chosen)} of {k} tuples in {draws} random draws: the exclusions "
            "forbid almost every combination; ask for fewer tuples or loosen the exclusions")
    return _sample_from_list(space, rows, k, rng)


def _sample_from_list(space: _Space, rows: Iterable[Sequence[int]], k: int,
                      rng: random.Random) -> TupleSample:
    rows = list(rows)
    if k <= len(rows):
        return TupleSample(tuples=[space.to_tuple(r) for r in rng.sample(rows, k)], requested=k)
    rng.shuffle(rows)
    return TupleSample(
        tuples=[space.to_tuple(r) for r in rows], requested=k, exhausted=True,
        note=f"only {len(rows)} tuples are allowed, fewer than the {k} requested: returning all")


# ---------------------------------------------------------------------------------------------
# Pairwise
# ---------------------------------------------------------------------------------------------


def pairwise_tuples(dims: Sequence[Dimension], exclusions: Iterable[Exclusion] = (),
                    seed: int = 0) -> list[TupleDict]:
    """A small set of allowed tuples covering every coverable pair of values at least once.

    Pairs that no allowed tuple contains are skipped (see ``uncoverable_pairs``). With one
    dimension there are no pairs and the result is one tuple per allowed value; in general every
    allowed value appears at least once. Deterministic for a given seed. See the module
    docstring for the lower bound and measured sizes.
    """
    space = _Space(dims, exclusions)
    return [space.to_tuple(row) for row in _pairwise_rows(space, seed)]


def uncoverable_pairs(dims: Sequence[Dimension], exclusions: Iterable[Exclusion] = ()) -> list[Pair]:
    """Pairs of values that no allowed tuple contains (so no tuple set can cover them)."""
    space = _Space(dims, exclusions)
    coverable = space.coverable_pairs()
    return [space.to_pair(p) for p in space.all_pairs() if p not in coverable]


ATTEMPTS = 4
"""Most independent seeded constructions tried by ``pairwise_tuples``; the smallest wins."""

PAIR_BUDGET = 5_000
"""Large spaces get fewer attempts: ``PAIR_BUDGET // coverable pairs`` of them, at least one.
(20 dims x 10 values has 19,000 pairs, so one attempt of a few seconds.)"""


def _pairwise_rows(space: _Space, seed: int) -> list[list[int]]:
    if space.k == 1:
        return [[v] for v in space.domains[0]]
    coverable = space.coverable_pairs()
    if not coverable:  # with two or more dimensions any allowed tuple would hold a pair
        return []
    bound = _lower_bound(coverable)
    rng = random.Random(seed)
    best: list[list[int]] | None = None
    attempts = max(1, min(ATTEMPTS, PAIR_BUDGET // len(coverable)))
    for _ in range(attempts):
        rows = _drop_redundant(_greedy_rows(space, coverable, rng), coverable)
        rows = _shrink(space, rows, coverable, bound, rng)
        if best is None or len(rows) < len(best):
            best = rows
        if len(best) <= bound:
            break
    assert best is not None
    return best


def _lower_bound(coverable: set[tuple[int, int, int, int]]) -> int:
    """Largest number of coverable pairs between two dimensions: each row covers one of them."""
    per_dim_pair: dict[tuple[int, int], int] = {}
    for i, _, j, _ in coverable:
        per_dim_pair[(i, j)] = per_dim_pair.get((i, j), 0) + 1
    return max(per_dim_pair.values())


class _PairPool:
    """The uncovered pairs: a set that also supports seeded random picks.

    A list plus each pair's position in it; removal swaps the last pair into the gap, so
    membership, removal and ``rng.sample`` are all cheap and the order is reproducible.
    """

    def __init__(self, pairs: Iterable[tuple[int, int, int, int]]):
        self.items = sorted(pairs)
        self.position = {p: n for n, p in enumerate(self.items)}

    def __contains__(self, pair: object) -> bool:
        return pair in self.position

    def __len__(self) -> int:
        return len(self.items)

    def discard(self, pair: tuple[int, int, int, int]) -> None:
        n = self.position.pop(pair, None)
        if n is None:
            return
        last = self.items.pop()
        if n < len(self.items):
            self.items[n] = last
            self.position[last] = n


CANDIDATES = 12
"""Candidate rows built per greedy step; the one covering most new pairs is kept."""


def _greedy_rows(space: _Space, coverable: set[tuple[int, int, int, int]],
                 rng: random.Random) -> list[list[int]]:
    """AETG-style greedy: add rows until every coverable pair is covered.

    Each step builds ``CANDIDATES`` rows and keeps the one covering the most uncovered pairs.
    A candidate starts from the uncovered pair whose two values still have the most uncovered
    pairs (the hardest to place later), then fills the other dimensions in random order, each
    with the value that covers most uncovered pairs with the values already chosen (ties go to
    the value with more uncovered pairs overall, then at random). With rules, a value is only
    chosen if the row can still be completed into an allowed tuple.
    """
    uncovered = _PairPool(coverable)
    # open_count[d][v]: uncovered pairs that involve value v of dimension d.
    open_count = [[0] * len(vals) for vals in space.values]
    for i, a, j, b in uncovered.items:
        open_count[i][a] += 1
        open_count[j][b] += 1
    rows: list[list[int]] = []
    while uncovered:
        best_row, best_gain = None, -1
        for _ in range(CANDIDATES):
            row = _candidate_row(space, uncovered, open_count, rng)
            gain = sum(1 for p in _row_pairs(row) if p in uncovered)
            if gain > best_gain:
                best_row, best_gain = row, gain
        assert best_row is not None and best_gain > 0  # the seed pair is always new
        rows.append(best_row)
        for i, a, j, b in _row_pairs(best_row):
            if (i, a, j, b) in uncovered:
                uncovered.discard((i, a, j, b))
                open_count[i][a] -= 1
                open_count[j][b] -= 1
    return rows


def _candidate_row(space: _Space, uncovered: _PairPool,
                   open_count: list[list[int]], rng: random.Random) -> list[int]:
    def weight(pair: tuple[int, int, int, int]) -> tuple[int, float]:
        i, a, j, b = pair
        return (open_count[i][a] + open_count[j][b], rng.random())

    # Sampling a few uncovered pairs and keeping the heaviest is cheaper than scanning all
    # and keeps candidates varied.
    pool = rng.sample(uncovered.items, min(len(uncovered), 16))
    i, a, j, b = max(pool, key=weight)
    row: list[int | None] = [None] * space.k
    row[i], row[j] = a, b
    rest = [d for d in range(space.k) if d not in (i, j)]
    rng.shuffle(rest)
    for d in rest:
        best_v, best_key = None, None
        for v in space.domains[d]:
            row[d] = v
            if space.rules and (space.violates(row, d) or space.extend(row) is None):
                continue
            gain = sum(1 for e in range(space.k) if row[e] is not None and e != d and
                       ((e, row[e], d, v) if e < d else (d, v, e, row[e])) in uncovered)
            key = (gain, open_count[d][v], rng.random())
            if best_key is None or key > best_key:
                best_v, best_key = v, key
        # The seed pair is coverable, so some allowed completion exists: best_v is never None.
        assert best_v is not None
        row[d] = best_v
    return row  # type: ignore[return-value]


def _drop_redundant(rows: list[list[int]], coverable: set[tuple[int, int, int, int]]) -> list[list[int]]:
    """Remove rows all of whose coverable pairs are also covered by other rows (latest first)."""
    counts: dict[tuple[int, int, int, int], int] = {}
    for row in rows:
        for p in _row_pairs(row):
            counts[p] = counts.get(p, 0) + 1
    kept = list(rows)
    for index in range(len(kept) - 1, -1, -1):
        pairs = [p for p in _row_pairs(kept[index]) if p in coverable]
        if all(counts[p] >= 2 for p in pairs):
            for p in _row_pairs(kept[index]):
                counts[p] -= 1
            del kept[index]
    return kept


SHRINK_STEPS = 2_000
"""Repair moves tried per row removed by ``_shrink`` before it gives up."""


def _shrink(space: _Space, rows: list[list[int]], coverable: set[tuple[int, int, int, int]],
            bound: int, rng: random.Random) -> list[list[int]]:
    """Try to cover everything with one row fewer, repeatedly, by local search.

    Drop the row whose pairs are least often unique, then repeat: pick an uncovered pair and
    write one of its values into the row where that change leaves the fewest pairs uncovered
    (keeping rows allowed). Give up after ``SHRINK_STEPS`` moves (successful repairs here mostly
    take under 200) and return the smallest complete set found. Moves are counted, not timed,
    so results stay deterministic.
    """
    best = [list(r) for r in rows]
    while len(best) > bound:
        trial = _without_weakest_row(best, coverable)
        repaired = _repair(space, trial, coverable, rng)
        if repaired is None:
            break
        best = repaired
    return best


def _without_weakest_row(rows: list[list[int]], coverable: set[tuple[int, int, int, int]]) -> list[list[int]]:
    """Copy of ``rows`` without the row covering the fewest pairs that no other row covers."""
    counts: dict[tuple[int, int, int, int], int] = {}
    for row in rows:
        for p in _row_pairs(row):
            counts[p] = counts.get(p, 0) + 1
    unique = [sum(1 for p in _row_pairs(r) if p in coverable and counts[p] == 1) for r in rows]
    weakest = min(range(len(rows)), key=lambda r: (unique[r], -r))
    return [list(r) for index, r in enumerate(rows) if index != weakest]


def _repair(space: _Space, rows: list[list[int]], coverable: set[tuple[int, int, int, int]],
            rng: random.Random) -> list[list[int]] | None:
    """Edit ``rows`` in place until they cover every coverable pair; None if moves run out.

    ``counts`` holds how many rows cover each coverable pair, so the effect of one change
    (pairs it stops covering minus pairs it starts covering) is computed from k lookups.
    """
    counts: dict[tuple[int, int, int, int], int] = {p: 0 for p in coverable}
    for row in rows:
        for p in _row_pairs(row):
            if p in counts:
                counts[p] += 1
    uncovered = {p for p, c in counts.items() if c == 0}

    def change(row: list[int], d: int, v: int, apply: bool) -> int:
        """Net pairs newly uncovered if row[d] becomes v (negative is good)."""
        old = row[d]
        delta = 0
        for e in range(space.k):
            if e == d:
                continue
            lost = (e, row[e], d, old) if e < d else (d, old, e, row[e])
            won = (e, row[e], d, v) if e < d else (d, v, e, row[e])
            if lost in counts and counts[lost] == 1:
                delta += 1
            if won in counts and counts[won] == 0:
                delta -= 1
            if apply:
                if lost in counts:
                    counts[lost] -= 1
                    if counts[lost] == 0:
                        uncovered.add(lost)
                if won in counts:
                    counts[won] += 1
                    uncovered.discard(won)
        if apply:
            row[d] = v
        return delta

    for _ in range(SHRINK_STEPS):
        if not uncovered:
            return rows
        i, a, j, b = rng.choice(sorted(uncovered))
        # Candidate moves: in some row already holding one value of the pair, set the other.
        moves = []
        for r, row in enumerate(rows):
            for d, v, e, w in ((j, b, i, a), (i, a, j, b)):
                if row[e] != w:
                    continue
                if space.rules:
                    # Only rules that mention d can become matched by changing d.
                    old = row[d]
                    row[d] = v
                    ok = not space.violates(row, d)
                    row[d] = old
                    if not ok:
                        continue
                moves.append((change(row, d, v, apply=False), rng.random(), r, d, v))
        if not moves:
            continue
        _, _, r, d, v = min(moves)
        change(rows[r], d, v, apply=True)
    return rows if not uncovered else None


# ---------------------------------------------------------------------------------------------
# Coverage
# ---------------------------------------------------------------------------------------------


def coverage_report(dims: Sequence[Dimension], tuples: Sequence[TupleDict],
                    exclusions: Iterable[Exclusion] = ()) -> CoverageReport:
    """Count coverable pairs present in ``tuples``; list missing and uncoverable pairs.

    Tuples that break an exclusion are listed in ``excluded_tuples`` and their pairs do not
    count. Raises ValueError naming the tuple (by position) that has an unknown or missing
    dimension or value.
    """
    space = _Space(dims, exclusions)
    coverable = space.coverable_pairs()
    covered: set[tuple[int, int, int, int]] = set()
    excluded: list[int] = []
    for index, tup in enumerate(tuples):
        row = space.row_of(tup, f"tuple {index + 1}")
        if not space.allowed(row):
            excluded.append(index)
            continue
        covered.update(_row_pairs(row))
    return CoverageReport(
        covered=len(covered & coverable),
        total=len(coverable),
        missing=[space.to_pair(p) for p in space.all_pairs() if p in coverable and p not in covered],
        uncoverable=[space.to_pair(p) for p in space.all_pairs() if p not in coverable],
        excluded_tuples=excluded,
    )


# ---------------------------------------------------------------------------------------------
# Manual import
# ---------------------------------------------------------------------------------------------


def parse_tuples_file(path_or_text: str | Path | bytes, dims: Sequence[Dimension],
                      fmt: Literal["csv", "json", "jsonl"] | None = None, *,
                      name: str | None = None,
                      exclusions: Iterable[Exclusion] = ()) -> ParsedTuples:
    """Read tuples from CSV (one column per dimension) or JSON / JSONL (one object per tuple).

    ``path_or_text`` is a ``Path``, a string naming an existing file, or the content itself
    (str or bytes, e.g. an upload). ``fmt`` defaults to the file suffix, else is guessed from
    the content. ``name`` labels messages for content without a file (default "tuples").

    Good rows are kept; each bad row gives one message "<name> line <n>: <reason>": unknown
    dimension or value, missing dimension, a row matching an exclusion, or a duplicate. In CSV
    a header without every dimension (or with unknown columns) rejects the whole file with one
    message at line 1, since no row of it could be read as intended.
    """
    text, label, suffix = _read_source(path_or_text, name)
    fmt = fmt or suffix or _guess_format(text)
    if fmt not in ("csv", "json", "jsonl"):
        raise ValueError(f"unknown tuple file format '{fmt}' (use csv, json or jsonl)")
    exclusions = list(exclusions)
    space = _Space(dims, exclusions)
    result = ParsedTuples(tuples=[], errors=[])
    seen: dict[tuple[int, ...], int] = {}

    def keep(line: int, record: object) -> None:
        row, problem = _record_row(space, record)
        if row is not None:
            tup = space.to_tuple(row)
            rule = next((ex for ex in exclusions if ex.matches(tup)), None)
            if rule is not None:
                problem = f"excluded by '{rule}'"
            elif row in seen:
                problem = f"duplicate of line {seen[row]}"
            else:
                seen[row] = line
                result.tuples.append(tup)
                return
        result.errors.append(f"{label} line {line}: {problem}")

    records = {"csv": _csv_records, "json": _json_records, "jsonl": _jsonl_records}[fmt]
    for line, record in records(text, space, result.errors, label):
        keep(line, record)
    return result


def _read_source(source: str | Path | bytes, name: str | None) -> tuple[str, str, str | None]:
    """(text, label for messages, format from the file suffix if any)."""
    path: Path | None = None
    if isinstance(source, Path):
        path = source
    elif isinstance(source, str) and "\n" not in source and len(source) < 4096:
        candidate = Path(source)
        if candidate.suffix.lower() in (".csv", ".json", ".jsonl") or candidate.is_file():
            path = candidate
    if path is not None:
        data: str | bytes = path.read_bytes()
        label = name or path.name
        suffix = path.suffix.lower().lstrip(".") or None
    else:
        data, label, suffix = source, name or "tuples", None
        if name and "." in name:
            suffix = name.rsplit(".", 1)[1].lower()
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
    return text, label, suffix if suffix in ("csv", "json", "jsonl") else None


def _guess_format(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        return "jsonl"
    return "csv"


def _record_row(space: _Space, record: object) -> tuple[tuple[int, ...] | None, str]:
    """Index form of one imported record, or None and every reason it does not fit."""
    if not isinstance(record, dict):
        return None, f"expected an object with one key per dimension, got {type(record).__name__}"
    by_name = {d.name: d for d in space.dims}
    problems = []
    values: dict[str, str] = {}
    reported: set[str] = set()  # dimensions with a bad value are not also "missing"
    for dim, raw in record.items():
        # Numbers are accepted as text so a value named "3" can be written as 3 in JSON.
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            problems.append(f"{dim}: value must be text, got {json.dumps(raw)}")
            reported.add(str(dim))
            continue
        value = str(raw).strip()
        if value == "":
            continue  # reported below as missing
        problem = _value_problem(by_name, str(dim), value)
        if problem:
            problems.append(problem)
            reported.add(str(dim))
        else:
            values[str(dim)] = value
    missing = [n for n in space.names if n not in values and n not in reported]
    if missing:
        problems.append("missing dimension " + ", ".join(f"'{m}'" for m in missing))
    if problems:
        return None, "; ".join(problems)
    return tuple(space.value_index[d][values[n]] for d, n in enumerate(space.names)), ""


def _csv_records(text: str, space: _Space, errors: list[str], label: str) -> Iterator[tuple[int, object]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        errors.append(f"{label} line 1: empty file, expected a header with the dimension names")
        return
    header = [h.strip() for h in header]
    unknown = [h for h in header if h and h not in space.dim_index]
    missing = [n for n in space.names if n not in header]
    if unknown or missing:
        parts = [f"unknown dimension '{u}'{_suggest(u, space.names)}" for u in unknown]
        if missing:
            parts.append("missing dimension " + ", ".join(f"'{m}'" for m in missing))
        errors.append(f"{label} line 1: header: {'; '.join(parts)}; no rows read")
        return
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            errors.append(f"{label} line {line}: {len(cells)} cells but the header has {len(header)} columns")
            continue
        yield line, {h: c for h, c in zip(header, cells) if h}


def _json_records(text: str, space: _Space, errors: list[str], label: str) -> Iterator[tuple[int, object]]:
    """Objects of a JSON array, each with the line where it starts (json gives no positions,
    so the array is walked item by item with ``raw_decode``)."""
    decoder = json.JSONDecoder()

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    pos = skip(0)
    if not text.startswith("[", pos):
        errors.append(f"{label} line {line_of(pos)}: expected a JSON array of objects")
        return
    pos = skip(pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            errors.append(f"{label} line {error.lineno}: invalid JSON ({error.msg}); rest of file skipped")
            return
        yield line_of(pos), item
        pos = skip(end)
        if text.startswith(",", pos):
            pos = skip(pos + 1)
        elif text.startswith("]", pos):
            return
        else:
            errors.append(f"{label} line {line_of(pos)}: expected ',' or ']'; rest of file skipped")
            return


def _jsonl_records(text: str, space: _Space, errors: list[str], label: str) -> Iterator[tuple[int, object]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield line, json.loads(raw)
        except json.JSONDecodeError as error:
            errors.append(f"{label} line {line}: invalid JSON ({error.msg})")

"""Tests for evalboard.tuples: models, exclusions, generators, coverage and tuple import.

Pairwise results are checked against a brute-force oracle written here from the definitions
(enumerate every tuple, drop excluded ones, collect the pairs that remain), independent of the
module's own search for coverable pairs.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from evalboard import tuples as tuples_module
from evalboard.tuples import (
    CoverageReport,
    Dimension,
    DimensionValue,
    Exclusion,
    Pair,
    coverage_report,
    full_product,
    full_product_count,
    pairwise_tuples,
    parse_exclusions,
    parse_tuples_file,
    sample_tuples,
    uncoverable_pairs,
)


def make_dims(*sizes: int) -> list[Dimension]:
    return [Dimension(name=f"d{i}", values=[f"v{j}" for j in range(n)]) for i, n in enumerate(sizes)]


@pytest.fixture
def persona_dims() -> list[Dimension]:
    return [
        Dimension(name="user_type", values=["admin", "end user"]),
        Dimension(name="expertise", values=["beginner", "expert"]),
        Dimension(name="intent", values=["billing", "bug report", "how-to"]),
    ]


# -- oracle ------------------------------------------------------------------------------------


def allowed_by_brute_force(dims, exclusions):
    every = (dict(zip([d.name for d in dims], combo))
             for combo in itertools.product(*[d.value_names for d in dims]))
    return [t for t in every if not any(ex.matches(t) for ex in exclusions)]


def pairs_of(tup):
    items = list(tup.items())
    return {Pair(a, va, b, vb) for (a, va), (b, vb) in itertools.combinations(items, 2)}


def random_case(rng: random.Random):
    dims = make_dims(*[rng.randint(1, 4) for _ in range(rng.randint(2, 5))])
    exclusions = []
    for _ in range(rng.randint(0, 4)):
        chosen = rng.sample(dims, rng.choice([1, 2, 2, 2, 3]) if len(dims) >= 3 else rng.choice([1, 2, 2]))
        exclusions.append(Exclusion(conditions={d.name: rng.choice(d.value_names) for d in chosen}))
    return dims, exclusions


# -- models and exclusions ---------------------------------------------------------------------


def test_dimension_accepts_plain_strings_and_keeps_descriptions():
    dim = Dimension(name="expertise", values=["beginner", DimensionValue(name="expert", description="uses jargon")])
    assert dim.value_names == ["beginner", "expert"]
    assert dim.values[1].description == "uses jargon"


@pytest.mark.parametrize("values, message", [
    ([], "at least 1"),
    (["a", "a"], "lists value 'a' twice"),
    (["a", "  "], "must not be empty"),
])
def test_dimension_rejects_bad_values(values, message):
    with pytest.raises(ValidationError, match=message):
        Dimension(name="d", values=values)


def test_dimensions_with_the_same_name_are_rejected():
    with pytest.raises(ValueError, match="dimension 'd0' is defined twice"):
        full_product_count(make_dims(2) + make_dims(3))


def test_exclusion_parses_and_matches(persona_dims):
    ex = Exclusion.parse(" user_type = admin ,expertise=beginner ", persona_dims)
    assert ex.conditions == {"user_type": "admin", "expertise": "beginner"}
    assert str(ex) == "user_type=admin, expertise=beginner"
    assert ex.matches({"user_type": "admin", "expertise": "beginner", "intent": "billing"})
    assert not ex.matches({"user_type": "admin", "expertise": "expert", "intent": "billing"})


@pytest.mark.parametrize("text, message", [
    ("user_type=admin, expertise=guru", "expertise='guru' is not a value of dimension 'expertise'"),
    ("usertype=admin", "unknown dimension 'usertype' \\(did you mean 'user_type'\\?\\)"),
    ("user_type=Admin", "did you mean 'admin'"),
    ("user_type admin", "'user_type admin' is not of the form dimension=value"),
    ("user_type=admin, user_type=end user", "dimension 'user_type' appears twice"),
    (" , ", "at least one dimension=value pair"),
])
def test_exclusion_parse_errors_name_the_problem(persona_dims, text, message):
    with pytest.raises(ValueError, match=message):
        Exclusion.parse(text, persona_dims)


def test_parse_exclusions_reports_every_bad_line(persona_dims):
    text = "user_type=admin, expertise=beginner\n\n# comment\nfoo=bar\nintent=refund\n"
    with pytest.raises(ValueError) as caught:
        parse_exclusions(text, persona_dims)
    assert "line 4: exclusion 'foo=bar': unknown dimension 'foo'" in str(caught.value)
    assert "line 5: exclusion 'intent=refund': intent='refund' is not a value" in str(caught.value)
    good = parse_exclusions("user_type=admin, expertise=beginner\n# c\nintent=billing", persona_dims)
    assert [str(ex) for ex in good] == ["user_type=admin, expertise=beginner", "intent=billing"]


def test_generators_reject_exclusions_with_unknown_names(persona_dims):
    bad = Exclusion(conditions={"intent": "refund"})
    for call in (lambda: full_product(persona_dims, [bad]), lambda: pairwise_tuples(persona_dims, [bad]),
                 lambda: sample_tuples(persona_dims, 2, 0, [bad])):
        with pytest.raises(ValueError, match="intent='refund' is not a value"):
            call()


# -- full product ------------------------------------------------------------------------------


def test_full_product_count_is_the_product_of_value_counts():
    assert full_product_count(make_dims(3, 5, 2, 7, 4)) == 840
    assert full_product_count(make_dims(10)) == 10
    assert full_product_count(make_dims(*[10] * 20)) == 10**20  # counted, not generated
    with pytest.raises(ValueError, match="at least one dimension"):
        full_product_count([])


def test_full_product_is_ordered_and_respects_exclusions(persona_dims):
    exclusions = [Exclusion.parse("user_type=admin, expertise=beginner"), Exclusion.parse("intent=how-to")]
    result = full_product(persona_dims, exclusions)
    assert result == allowed_by_brute_force(persona_dims, exclusions)
    assert len(result) == 2 * 2 * 3 - 3 - 4 + 1  # inclusion-exclusion: 3 + 4 minus 1 counted twice
    assert list(result[0]) == ["user_type", "expertise", "intent"]
    assert result[0] == {"user_type": "admin", "expertise": "expert", "intent": "billing"}


# -- sampling ----------------------------------------------------------------------------------


def test_sample_is_distinct_deterministic_and_allowed(persona_dims):
    exclusions = [Exclusion.parse("user_type=admin, expertise=beginner")]
    first = sample_tuples(persona_dims, 5, seed=7, exclusions=exclusions)
    assert first == sample_tuples(persona_dims, 5, seed=7, exclusions=exclusions)
    assert not first.exhausted and first.requested == 5
    keys = [tuple(t.values()) for t in first.tuples]
    assert len(keys) == len(set(keys)) == 5
    assert all(not exclusions[0].matches(t) for t in first.tuples)
    others = [sample_tuples(persona_dims, 5, seed=s, exclusions=exclusions).tuples for s in range(8)]
    assert any(o != first.tuples for o in others)


def test_sample_asking_too_many_returns_all_allowed_and_says_so(persona_dims):
    exclusions = [Exclusion.parse("user_type=admin, expertise=beginner")]
    result = sample_tuples(persona_dims, 50, seed=1, exclusions=exclusions)
    assert result.exhausted
    assert "only 9 tuples are allowed" in result.note
    assert sorted(map(str, result.tuples)) == sorted(map(str, allowed_by_brute_force(persona_dims, exclusions)))
    assert sample_tuples(persona_dims, 0).tuples == []
    with pytest.raises(ValueError, match="k must be 0 or more"):
        sample_tuples(persona_dims, -1)


def test_sample_in_a_huge_space_without_enumerating():
    dims = make_dims(*[10] * 20)
    exclusions = [Exclusion(conditions={"d0": "v0"}), Exclusion(conditions={"d1": "v1", "d2": "v2"})]
    result = sample_tuples(dims, 200, seed=3, exclusions=exclusions)
    assert len(result.tuples) == 200 and not result.exhausted
    assert len({tuple(t.values()) for t in result.tuples}) == 200
    assert not any(ex.matches(t) for t in result.tuples for ex in exclusions)
    assert result == sample_tuples(dims, 200, seed=3, exclusions=exclusions)


@pytest.mark.parametrize("enumerate_limit", [tuples_module.ENUMERATE_LIMIT, 0])
def test_sample_is_uniform_over_allowed_tuples(monkeypatch, enumerate_limit):
    """Both paths (enumerate, and rejection when the limit is 0) pick each allowed tuple with
    equal probability: over 3000 one-tuple samples each of 9 tuples is expected 333 times, and
    a count outside 250..420 would be > 5 standard deviations off."""
    monkeypatch.setattr(tuples_module, "ENUMERATE_LIMIT", enumerate_limit)
    dims = make_dims(2, 2, 3)
    exclusions = [Exclusion.parse("d0=v0, d1=v0")]
    counts = Counter(str(sample_tuples(dims, 1, seed=s, exclusions=exclusions).tuples[0]) for s in range(3000))
    assert len(counts) == 9
    assert all(250 <= c <= 420 for c in counts.values()), counts


def few_allowed_case():
    """27 candidates, but d0=v0 and d0=v1 are each excluded with every value of d1: 9 allowed.
    (Pair rules, not one-condition ones, so the candidates are not shrunk up front.)"""
    dims = make_dims(3, 3, 3)
    exclusions = [Exclusion(conditions={"d0": a, "d1": b}) for a in ("v0", "v1") for b in ("v0", "v1", "v2")]
    return dims, exclusions


def test_rejection_sampling_lists_the_allowed_tuples_when_draws_run_out(monkeypatch):
    monkeypatch.setattr(tuples_module, "ENUMERATE_LIMIT", 10)
    dims, exclusions = few_allowed_case()
    result = sample_tuples(dims, 100, seed=0, exclusions=exclusions)
    assert result.exhausted and len(result.tuples) == 9
    assert all(t["d0"] == "v2" for t in result.tuples)


def test_rejection_sampling_gives_up_clearly_when_too_many_to_list(monkeypatch):
    monkeypatch.setattr(tuples_module, "ENUMERATE_LIMIT", 5)
    dims, exclusions = few_allowed_case()
    with pytest.raises(ValueError, match="found only 9 of 100 tuples .* forbid almost every combination"):
        sample_tuples(dims, 100, seed=0, exclusions=exclusions)


def test_sample_shrinks_candidates_by_banned_values_before_drawing():
    """16 dims x 10 values with all but one value banned in 12 of them: 10**4 allowed tuples out
    of 10**16. Drawing from the full product would almost never hit one; drawing from the
    remaining values always does, and the small candidate set is simply listed."""
    dims = make_dims(*[10] * 16)
    exclusions = [Exclusion(conditions={f"d{i}": f"v{j}"}) for i in range(12) for j in range(1, 10)]
    result = sample_tuples(dims, 20_000, seed=0, exclusions=exclusions)
    assert result.exhausted and len(result.tuples) == 10**4
    assert all(t["d5"] == "v0" for t in result.tuples)


# -- pairwise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(120))
def test_pairwise_covers_every_coverable_pair_and_no_excluded_tuple(case):
    rng = random.Random(case)
    dims, exclusions = random_case(rng)
    allowed = allowed_by_brute_force(dims, exclusions)
    coverable = set().union(*map(pairs_of, allowed)) if allowed else set()

    result = pairwise_tuples(dims, exclusions, seed=case)

    assert not any(ex.matches(t) for t in result for ex in exclusions)
    assert all(list(t) == [d.name for d in dims] for t in result)
    covered = set().union(*map(pairs_of, result)) if result else set()
    assert coverable <= covered, f"missing {coverable - covered}"
    every_pair = set().union(*map(pairs_of, allowed_by_brute_force(dims, [])))
    assert set(uncoverable_pairs(dims, exclusions)) == every_pair - coverable
    assert result == pairwise_tuples(dims, exclusions, seed=case)
    if allowed:  # every allowed value shows up, even in dimensions no pair needs
        for d in dims:
            assert {t[d.name] for t in allowed} == {t[d.name] for t in result}
    else:
        assert result == []


@pytest.mark.parametrize("sizes, goal", [((4,) * 6, 25), ((3, 5, 2, 7, 4), 56)])
def test_pairwise_size_within_goal_on_benchmark_shapes(sizes, goal):
    dims = make_dims(*sizes)
    bound = sorted(sizes)[-1] * sorted(sizes)[-2]
    result = pairwise_tuples(dims)
    assert bound <= len(result) <= goal
    assert coverage_report(dims, result).complete


def test_pairwise_with_one_dimension_lists_each_allowed_value():
    dims = make_dims(4)
    assert pairwise_tuples(dims) == [{"d0": f"v{j}"} for j in range(4)]
    assert pairwise_tuples(dims, [Exclusion(conditions={"d0": "v2"})]) == [{"d0": v} for v in ("v0", "v1", "v3")]


def test_pairwise_with_single_value_dimensions():
    assert pairwise_tuples(make_dims(1, 1, 1)) == [{"d0": "v0", "d1": "v0", "d2": "v0"}]
    result = pairwise_tuples(make_dims(1, 3, 1, 2))
    assert len(result) == 6  # the 3 x 2 pairs of d1 and d3, each in its own tuple
    assert coverage_report(make_dims(1, 3, 1, 2), result).complete


def test_pairwise_reports_pairs_blocked_indirectly(persona_dims):
    """admin+billing is never excluded itself, but admins are always experts and experts never
    ask about billing, so no allowed tuple holds it: it is uncoverable, not missing."""
    exclusions = parse_exclusions("user_type=admin, expertise=beginner\nexpertise=expert, intent=billing",
                                  persona_dims)
    result = pairwise_tuples(persona_dims, exclusions)
    report = coverage_report(persona_dims, result, exclusions)
    assert report.complete and report.missing == []
    assert Pair("user_type", "admin", "intent", "billing") in report.uncoverable
    assert Pair("user_type", "admin", "expertise", "beginner") in report.uncoverable
    assert all(t != {"user_type": "admin", "expertise": "expert", "intent": "billing"} for t in result)


def test_benchmark_reports_both_figures_within_goal():
    from benchmarks.bench_tuples import run

    figures = {f["bench"]: f for f in run()}
    assert set(figures) == {"pairwise_6x4_vs_bound", "pairwise_uneven_vs_bound"}
    for figure in figures.values():
        assert figure["unit"] == "ratio" and figure["floor"] == 1.0 and figure["goal"] == 1.6
        assert 1.0 <= figure["value"] <= 1.6


# -- coverage report ---------------------------------------------------------------------------


def test_coverage_report_lists_missing_pairs_and_excluded_tuples(persona_dims):
    exclusions = [Exclusion.parse("user_type=admin, expertise=beginner")]
    tuples = [
        {"user_type": "admin", "expertise": "expert", "intent": "billing"},
        {"user_type": "admin", "expertise": "beginner", "intent": "how-to"},  # excluded
    ]
    report = coverage_report(persona_dims, tuples, exclusions)
    assert isinstance(report, CoverageReport)
    # pairs: 2x2 + 2x3 + 2x3 = 16, minus the excluded admin+beginner = 15 coverable
    assert report.total == 15 and report.covered == 3
    assert report.excluded_tuples == [1]
    assert Pair("user_type", "end user", "intent", "how-to") in report.missing
    assert len(report.missing) == 12 and not report.complete
    assert report.ratio == pytest.approx(3 / 15)


def test_coverage_report_names_the_bad_tuple(persona_dims):
    with pytest.raises(ValueError, match="tuple 2: expertise='guru' is not a value"):
        coverage_report(persona_dims, [{"user_type": "admin", "expertise": "expert", "intent": "billing"},
                                       {"user_type": "admin", "expertise": "guru", "intent": "billing"}])
    with pytest.raises(ValueError, match="tuple 1: missing dimension 'intent'"):
        coverage_report(persona_dims, [{"user_type": "admin", "expertise": "expert"}])


# -- import ------------------------------------------------------------------------------------


def test_csv_import_keeps_good_rows_and_reports_bad_ones_by_line(persona_dims, tmp_path):
    path = tmp_path / "tuples.csv"
    path.write_text(
        "user_type,expertise,intent\n"            # line 1
        "admin,expert,billing\n"                  # 2 good
        "end user,beginner,how-to\n"              # 3 good
        "admin,guru,billing\n"                    # 4 unknown value
        "\n"                                      # 5 blank, skipped
        "admin,beginner,how-to\n"                 # 6 excluded
        "end user,,billing\n"                     # 7 missing value
        "admin,expert,billing\n"                  # 8 duplicate
        "end user,expert,\"how-to\",extra\n",     # 9 too many cells
        encoding="utf-8")
    exclusions = [Exclusion.parse("user_type=admin, expertise=beginner")]
    result = parse_tuples_file(path, persona_dims, exclusions=exclusions)
    assert result.tuples == [
        {"user_type": "admin", "expertise": "expert", "intent": "billing"},
        {"user_type": "end user", "expertise": "beginner", "intent": "how-to"},
    ]
    assert result.errors[0].startswith("tuples.csv line 4: expertise='guru' is not a value of dimension 'expertise'")
    assert result.errors[1:] == [
        "tuples.csv line 6: excluded by 'user_type=admin, expertise=beginner'",
        "tuples.csv line 7: missing dimension 'expertise'",
        "tuples.csv line 8: duplicate of line 2",
        "tuples.csv line 9: 4 cells but the header has 3 columns",
    ]
    assert parse_tuples_file(str(path), persona_dims, exclusions=exclusions) == result


def test_csv_header_problems_reject_the_file_once(persona_dims):
    result = parse_tuples_file("user_type,expertize,intent\nadmin,expert,billing\n", persona_dims, name="up.csv")
    assert result.tuples == []
    assert result.errors == ["up.csv line 1: header: unknown dimension 'expertize' (did you mean 'expertise'?); "
                             "missing dimension 'expertise'; no rows read"]


def test_csv_from_uploaded_bytes_with_bom_and_reordered_columns(persona_dims):
    data = "\ufeffintent,user_type,expertise\r\nbilling,admin,expert\r\n".encode()
    result = parse_tuples_file(data, persona_dims, name="upload.csv")
    assert result.errors == []
    assert result.tuples == [{"user_type": "admin", "expertise": "expert", "intent": "billing"}]
    assert list(result.tuples[0]) == ["user_type", "expertise", "intent"]


def test_json_array_errors_carry_the_line_where_the_object_starts(persona_dims):
    text = ('[\n'
            '  {"user_type": "admin", "expertise": "expert", "intent": "billing"},\n'
            '  {"user_type": "Admin",\n'
            '   "expertise": "expert"},\n'
            '  7,\n'
            '  {"user_type": "admin", "expertise": "expert", "intent": "how-to", "tone": "rude"}\n'
            ']')
    result = parse_tuples_file(text, persona_dims, name="t.json")
    assert result.tuples == [{"user_type": "admin", "expertise": "expert", "intent": "billing"}]
    assert result.errors == [
        "t.json line 3: user_type='Admin' is not a value of dimension 'user_type' (did you mean 'admin'?); "
        "missing dimension 'intent'",
        "t.json line 5: expected an object with one key per dimension, got int",
        "t.json line 6: unknown dimension 'tone' (known: user_type, expertise, intent)",
    ]


def test_jsonl_bad_lines_are_reported_and_good_ones_kept(persona_dims, tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [json.dumps({"user_type": "admin", "expertise": "expert", "intent": "billing"}),
            "{not json",
            "",
            json.dumps({"user_type": "end user", "expertise": ["beginner"], "intent": "billing"})]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = parse_tuples_file(path, persona_dims)
    assert len(result.tuples) == 1
    assert result.errors[0].startswith("q.jsonl line 2: invalid JSON")
    assert result.errors[1] == 'q.jsonl line 4: expertise: value must be text, got ["beginner"]'


def test_format_is_guessed_from_content_and_bad_format_is_refused(persona_dims):
    line = '{"user_type": "admin", "expertise": "expert", "intent": "billing"}'
    assert len(parse_tuples_file(line + "\n", persona_dims).tuples) == 1  # jsonl
    assert len(parse_tuples_file(f"[{line}]", persona_dims).tuples) == 1  # json
    with pytest.raises(ValueError, match="unknown tuple file format 'xml'"):
        parse_tuples_file(line, persona_dims, fmt="xml")  # type: ignore[arg-type]

"""Production prevalence, read from the counts: per failure mode over a window, per day or week,
per facet value, and two windows compared.

Every figure is an estimate for one judge version from k flagged of m judged production traces:

- raw rate: k / m with its Wilson interval (what the judge says, errors included);
- corrected prevalence: the Rogan-Gladen estimate (k/m + TNR - 1) / (TPR + TNR - 1), clipped to
  [0, 1], with the interval of `evalboard.stats.corrected_prevalence` (method "fiducial_cp"),
  TPR = tp / (tp + fn) and TNR = tn / (tn + fp) taken from the version's frozen test result;
- or, when the correction is impossible (TPR + TNR <= 1, no fails or no passes in the test
  split, no production traces), the raw rate alone and the reason.

`METHOD_NOTE` says the same for people, with what the interval covers and assumes; the
dashboard shows it as its help and the CLI puts it in its JSON.

Reading cost does not depend on how many verdicts are stored: everything here sums rows of
`production_counts` (a few per version, day and facet value), never the verdicts themselves,
except `flagged_traces`, which reads one page through an index. Monte Carlo intervals cost a
few milliseconds each, so they are memoised by their counts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, select

from evalboard.db import judge_verdicts, production_counts, production_verdicts, traces
from evalboard.production.counts import FACET_ALL
from evalboard.production.runs import RunJudge, get_run, run_counts
from evalboard.stats import DEFAULT_METHOD, CorrectionNotPossible, corrected_prevalence, diff_interval, wilson_interval
from evalboard.stats.prevalence import DEFAULT_DRAWS
from evalboard.store import Store

TREND_DRAWS = 4_000
"""Monte Carlo draws per interval for trends and breakdowns (dozens of intervals per chart).
Fewer than the default 20 000 moves an interval limit by well under its own standard error."""
LOW_N = 30
"""Cells with fewer judged traces are marked: their intervals are wide (about +-15 points or more)."""
PERIODS = ("day", "week")

METHOD_NOTE = """\
**Raw rate.** The share of sampled production traces the judge flagged, *k / m*, with a 95% Wilson
interval. It is biased: the judge misses some failures (TPR < 1) and flags some good traces (TNR < 1).

**Corrected prevalence.** The share of traces that really show the failure, estimated as
*(k/m + TNR - 1) / (TPR + TNR - 1)* (Rogan-Gladen), clipped to 0-100%. TPR (failures the judge
catches) and TNR (good traces it passes) come from the judge version's frozen test-split result.

**The interval** (95%) accounts for the three chances behind the estimate: which production traces were
sampled, which human-failed traces were in the test split (TPR) and which human-passed ones (TNR). It is
a Monte Carlo interval from exact (Clopper-Pearson) confidence distributions of the three proportions,
each leaning the cautious way ("fiducial_cp" in evalboard.stats). In a simulation grid of true rates,
TPR, TNR, test splits from 46 traces and production samples from 200 (benchmarks/bench_prevalence.py)
it covered the true prevalence in at least 94.9% of simulated studies in every cell; resampling the test
split alone, as judgy does, covered as little as 40%.

**It assumes** that the production sample is a random sample of the traffic in the window, that **the
test split is representative of production** (the judge errs on production traces at the rates it erred
on the test split: same kinds of traces, same labelling standard), and that the human labels are right.
It does not cover label mistakes, a judge that drifts, or traffic outside the sample.

**No correction** is made when TPR + TNR <= 1 (the judge is no better than chance), or when the test
split has no failed or no passed traces: the raw rate is shown alone, with the reason.

**Trends and breakdowns** estimate each day, week or value separately with the same TPR and TNR;
cells with fewer than 30 judged traces are marked, their intervals are wide. A window pools the
samples of its days, so a day sampled more heavily weighs more.

**Comparing windows.** Both windows are corrected with the same TPR and TNR, so the corrected change is
the raw change divided by (TPR + TNR - 1), before clipping: it is clear exactly when the raw change's
95% interval (Newcombe's, from the two Wilson intervals) excludes zero."""


@dataclass(frozen=True)
class ModeEstimate:
    """One judge version's prevalence estimate from `flagged` of `judged` traces.

    raw* are NaN when nothing was judged; corrected, low and high are None when the correction
    was refused, and `refused` says why."""

    judge_id: int
    judge: str
    mode: str
    version_id: int
    version: str
    flagged: int
    judged: int
    raw: float
    raw_low: float
    raw_high: float
    corrected: float | None
    low: float | None
    high: float | None
    refused: str | None
    tpr: float | None
    tnr: float | None
    tp: int
    n_fail_test: int
    tn: int
    n_pass_test: int
    method: str = DEFAULT_METHOD
    confidence: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@functools.lru_cache(maxsize=8192)
def _interval(k: int, m: int, tp: int, n1: int, tn: int, n0: int, confidence: float,
              draws: int) -> tuple[float, float, float] | str:
    """(corrected, low, high), or the reason the correction is refused. Memoised: the same
    counts give the same interval (the Monte Carlo is seeded)."""
    try:
        est = corrected_prevalence(k, m, tp, n1, tn, n0, confidence, draws=draws)
    except CorrectionNotPossible as exc:
        return exc.reason
    return est.corrected, est.low, est.high


def clear_cache() -> None:
    """Forget memoised intervals (benchmarks measure the computation, not the memo)."""
    _interval.cache_clear()


def estimate(judge: RunJudge, flagged: int, judged: int, *, confidence: float = 0.95,
             draws: int = DEFAULT_DRAWS) -> ModeEstimate:
    """The raw and corrected prevalence of `judge`'s mode from `flagged` of `judged` traces."""
    c = judge.confusion
    if judged:
        raw = flagged / judged
        raw_low, raw_high = wilson_interval(flagged, judged, confidence)
    else:
        raw = raw_low = raw_high = math.nan
    result = _interval(int(flagged), int(judged), c["tp"], judge.n_fail, c["tn"], judge.n_pass, confidence, draws)
    corrected = low = high = None
    refused = None
    if isinstance(result, str):
        refused = result
    else:
        corrected, low, high = result
    return ModeEstimate(judge.judge_id, judge.judge, judge.mode, judge.version_id, judge.version, int(flagged),
                        int(judged), raw, raw_low, raw_high, corrected, low, high, refused, judge.tpr, judge.tnr,
                        c["tp"], judge.n_fail, c["tn"], judge.n_pass, DEFAULT_METHOD, confidence)


ESTIMATE_COLUMNS = ["mode", "judge", "version", "version_id", "flagged", "judged", "raw", "raw_low", "raw_high",
                    "corrected", "low", "high", "refused"]


def _rows(estimates: Sequence[ModeEstimate], **extra: Any) -> list[dict[str, Any]]:
    return [{**{k: getattr(e, k) for k in ESTIMATE_COLUMNS}, **extra} for e in estimates]


# ----------------------------------------------------------------------------- counts


def _day(value: date | datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat()


def data_span(store: Store, project_id: int) -> tuple[date, date] | None:
    """First and last day with production verdicts, or None when there are none."""
    q = select(func.min(production_counts.c.day), func.max(production_counts.c.day)).where(
        production_counts.c.project_id == project_id, production_counts.c.facet == FACET_ALL)
    with store.engine.connect() as conn:
        first, last = conn.execute(q).one()
    if first is None:
        return None
    return date.fromisoformat(first), date.fromisoformat(last)


def daily_counts(store: Store, project_id: int, version_ids: Sequence[int], start: date | str | None = None,
                 end: date | str | None = None, facet: str = FACET_ALL) -> pd.DataFrame:
    """Rows of production_counts: version_id, day, value, judged, flagged (start/end inclusive)."""
    pc = production_counts
    conds = [pc.c.project_id == project_id, pc.c.facet == facet, pc.c.version_id.in_(list(version_ids) or [-1])]
    if start is not None:
        conds.append(pc.c.day >= _day(start))
    if end is not None:
        conds.append(pc.c.day <= _day(end))
    q = select(pc.c.version_id, pc.c.day, pc.c.value, pc.c.judged, pc.c.flagged).where(*conds)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["version_id", "day", "value", "judged", "flagged"])


def facets(store: Store, project_id: int) -> list[str]:
    """The facets production counts hold besides "all": environment, release, tag, then each
    dimension ("dimension:<name>") in name order."""
    q = select(production_counts.c.facet).where(production_counts.c.project_id == project_id).distinct()
    with store.engine.connect() as conn:
        found = set(conn.execute(q).scalars()) - {FACET_ALL}
    fixed = [f for f in ("environment", "release", "tag") if f in found]
    return fixed + sorted(found - set(fixed))


def facet_label(facet: str) -> str:
    return facet.removeprefix("dimension:") if facet.startswith("dimension:") else facet


# ----------------------------------------------------------------------------- estimates


def window_estimates(store: Store, project_id: int, judges: Sequence[RunJudge], start: date | None = None,
                     end: date | None = None, *, confidence: float = 0.95,
                     draws: int = DEFAULT_DRAWS) -> list[ModeEstimate]:
    """One estimate per judge version over the days start..end (inclusive; None = unbounded)."""
    counts = daily_counts(store, project_id, [j.version_id for j in judges], start, end)
    sums = counts.groupby("version_id")[["flagged", "judged"]].sum() if not counts.empty else None
    out = []
    for judge in judges:
        k = m = 0
        if sums is not None and judge.version_id in sums.index:
            k, m = (int(x) for x in sums.loc[judge.version_id, ["flagged", "judged"]])
        out.append(estimate(judge, k, m, confidence=confidence, draws=draws))
    return out


def estimates_table(estimates: Sequence[ModeEstimate]) -> pd.DataFrame:
    return pd.DataFrame(_rows(estimates), columns=ESTIMATE_COLUMNS)


def period_start(day: date, period: str) -> date:
    """The day itself, or the Monday of its ISO week."""
    if period not in PERIODS:
        raise ValueError(f"A trend is per 'day' or per 'week', not {period!r}.")
    return day if period == "day" else day - timedelta(days=day.weekday())


def trend(store: Store, project_id: int, judges: Sequence[RunJudge], start: date | None = None,
          end: date | None = None, period: str = "day", *, confidence: float = 0.95,
          draws: int = TREND_DRAWS) -> pd.DataFrame:
    """Per judge and period (day, or ISO week starting Monday): the estimate of that period's
    traces. Periods without judged traces are left out."""
    counts = daily_counts(store, project_id, [j.version_id for j in judges], start, end)
    columns = ["period", *ESTIMATE_COLUMNS, "low_n"]
    if counts.empty:
        return pd.DataFrame(columns=columns)
    counts["period"] = [period_start(date.fromisoformat(d), period) for d in counts["day"]]
    sums = counts.groupby(["version_id", "period"], as_index=False)[["flagged", "judged"]].sum()
    by_version = {j.version_id: j for j in judges}
    rows = []
    for r in sums.itertuples(index=False):
        est = estimate(by_version[int(r.version_id)], int(r.flagged), int(r.judged), confidence=confidence, draws=draws)
        rows += _rows([est], period=r.period, low_n=est.judged < LOW_N)
    return pd.DataFrame(rows, columns=columns).sort_values(["mode", "period"], ignore_index=True)


def breakdown(store: Store, project_id: int, judges: Sequence[RunJudge], facet: str, start: date | None = None,
              end: date | None = None, *, confidence: float = 0.95, draws: int = TREND_DRAWS) -> pd.DataFrame:
    """Per judge and value of `facet` (e.g. "environment", "tag", "dimension:persona"): the
    estimate of the traces with that value. A trace with several tags counts under each."""
    counts = daily_counts(store, project_id, [j.version_id for j in judges], start, end, facet=facet)
    columns = ["value", *ESTIMATE_COLUMNS, "low_n"]
    if counts.empty:
        return pd.DataFrame(columns=columns)
    sums = counts.groupby(["version_id", "value"], as_index=False)[["flagged", "judged"]].sum()
    by_version = {j.version_id: j for j in judges}
    rows = []
    for r in sums.itertuples(index=False):
        est = estimate(by_version[int(r.version_id)], int(r.flagged), int(r.judged), confidence=confidence, draws=draws)
        rows += _rows([est], value=r.value, low_n=est.judged < LOW_N)
    return (pd.DataFrame(rows, columns=columns)
            .sort_values(["mode", "judged", "value"], ascending=[True, False, True], ignore_index=True))


def compare_windows(store: Store, project_id: int, judges: Sequence[RunJudge], first: tuple[date, date],
                    second: tuple[date, date], *, confidence: float = 0.95) -> pd.DataFrame:
    """Per judge: the estimate in each window, and the change second - first.

    raw_diff (and its interval) is the change in the raw rate with Newcombe's interval;
    corrected_diff the change in the corrected prevalence. Both windows share TPR and TNR, so
    before clipping the corrected change is raw_diff / (TPR + TNR - 1) and is clear exactly when
    the raw one is: `significant` says the raw interval excludes 0. NaN where a window has no
    judged traces (or, for corrected_diff, where the correction is refused)."""
    a = window_estimates(store, project_id, judges, *first, confidence=confidence)
    b = window_estimates(store, project_id, judges, *second, confidence=confidence)
    rows = []
    for ea, eb in zip(a, b, strict=True):
        row: dict[str, Any] = {"mode": ea.mode, "judge": ea.judge, "version": ea.version}
        for tag, e in (("1", ea), ("2", eb)):
            row.update({f"flagged_{tag}": e.flagged, f"judged_{tag}": e.judged, f"raw_{tag}": e.raw,
                        f"corrected_{tag}": e.corrected, f"low_{tag}": e.low, f"high_{tag}": e.high})
        diff = low = high = math.nan
        if ea.judged and eb.judged:
            d = diff_interval(eb.flagged, eb.judged, ea.flagged, ea.judged, confidence)
            diff, low, high = d.diff, d.low, d.high
        both = ea.corrected is not None and eb.corrected is not None and ea.judged and eb.judged
        corrected = eb.corrected - ea.corrected if both else math.nan
        row.update(raw_diff=diff, raw_diff_low=low, raw_diff_high=high, corrected_diff=corrected,
                   significant=bool(not math.isnan(low) and (low > 0 or high < 0)), refused=ea.refused or eb.refused)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- flagged traces


def _flagged_where(project_id: int, version_id: int, start: date | None, end: date | None) -> list[Any]:
    pv = production_verdicts
    conds = [pv.c.project_id == project_id, pv.c.version_id == version_id, pv.c.flagged == True]  # noqa: E712 - "= 1" uses the index; "IS 1" may not
    if start is not None:
        conds.append(pv.c.day >= _day(start))
    if end is not None:
        conds.append(pv.c.day <= _day(end))
    return conds


def count_flagged(store: Store, project_id: int, version_id: int, start: date | None = None,
                  end: date | None = None) -> int:
    q = select(func.count()).select_from(production_verdicts).where(*_flagged_where(project_id, version_id, start, end))
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def flagged_traces(store: Store, project_id: int, version_id: int, start: date | None = None,
                   end: date | None = None, *, limit: int = 50, offset: int = 0) -> pd.DataFrame:
    """One page of the traces the version flagged in the window, newest day first, with the
    judge's reasoning: trace_id, day, time, name, input, output, environment, reasoning."""
    pv, jv = production_verdicts, judge_verdicts
    q = (select(pv.c.trace_id, pv.c.day, traces.c.timestamp, traces.c.name, traces.c.input_preview,
                traces.c.output_preview, traces.c.environment, jv.c.reasoning)
         .select_from(pv.join(traces, traces.c.id == pv.c.trace_id)
                      .outerjoin(jv, and_(jv.c.version_id == pv.c.version_id, jv.c.trace_id == pv.c.trace_id)))
         .where(*_flagged_where(project_id, version_id, start, end))
         .order_by(pv.c.day.desc(), pv.c.trace_id.desc()).limit(limit).offset(offset))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["trace_id", "day", "time", "name", "input", "output", "environment",
                                       "reasoning"])


# ----------------------------------------------------------------------------- one run


def run_estimates(store: Store, run_id: int, *, confidence: float = 0.95) -> list[ModeEstimate]:
    """One estimate per judge of the run, from the verdicts of the run's own sample."""
    run = get_run(store, run_id)
    counts = run_counts(store, run_id)
    return [estimate(j, *counts.get(j.version_id, (0, 0)), confidence=confidence) for j in run.judges]


def run_summary(store: Store, run_id: int, *, confidence: float = 0.95) -> dict[str, Any]:
    """The run and its estimates as JSON-able data (what `evalboard prevalence --json` prints)."""
    run = get_run(store, run_id)

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "run": {"id": run.id, "name": run.name, "status": run.status, "execution": run.execution,
                "origin": run.origin, "traces": run.trace_count, "sample": run.sample,
                "sample_description": run.describe_sample(), "window": {"start": when(run.window_start),
                                                                      "end": when(run.window_end)},
                "judges": [j.as_dict() for j in run.judges], "calls": run.calls, "failed": run.failed,
                "cost": run.cost, "created_at": when(run.created_at), "finished_at": when(run.finished_at)},
        "estimates": [e.as_dict() for e in run_estimates(store, run_id, confidence=confidence)],
        "method": {"name": DEFAULT_METHOD, "confidence": confidence,
                   "raw": "k/m with a Wilson score interval",
                   "corrected": "Rogan-Gladen (k/m + TNR - 1) / (TPR + TNR - 1), clipped to [0, 1]; TPR and TNR "
                                "from the judge version's frozen test-split result",
                   "interval_covers": "sampling of the production traces and of the test split's failed "
                                      "(TPR) and passed (TNR) traces",
                   "assumes": "a random production sample; a test split representative of production; "
                              "correct human labels",
                   "refused_when": "TPR + TNR <= 1, or the test split has no failed or no passed traces"},
    }


__all__ = [
    "ESTIMATE_COLUMNS", "LOW_N", "METHOD_NOTE", "ModeEstimate", "PERIODS", "TREND_DRAWS", "breakdown",
    "clear_cache", "compare_windows", "count_flagged", "daily_counts", "data_span", "estimate", "estimates_table",
    "facet_label", "facets", "flagged_traces", "period_start", "run_estimates", "run_summary", "trend",
    "window_estimates",
]

"""The demo project's production traffic: six weeks judged by the validated judge, with a fix.

What is added, and where it comes from (demo data, labelled as such):

- Six weeks of production traces of the Nimbus assistant (Monday 12 October to Sunday 22
  November 2026, 150 a week): support emails it drafted and documentation answers, in the
  environments production-eu and production-us, with the persona/intent/expertise/style
  dimensions. Generated from a seeded RNG (source "demo-production").
- The fix: release 4.3.0, deployed on Monday 2 November, ships a new email prompt. Before it,
  about 30% of drafted emails are in the wrong tone (45% of those written for non-technical
  managers); after it, about 4%. This is the planted truth the dashboard should recover.
- One production run per week with every validated demo judge that has recorded answers (the
  email-tone judge). Its verdicts are recorded answers (origin "demo: recorded answers"),
  written by `demo_judges.recorded_answer` with the same seeded error rates as the validated
  version, because the demo must work without an LLM.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from evalboard.demo import DIMENSIONS, DOCS
from evalboard.demo_judges import ERROR_RATES, RECORDED, recorded_answer
from evalboard.models import TraceRecord
from evalboard.judges.core import list_judges
from evalboard.production.runs import Sample, judge_choice, list_runs, record_run
from evalboard.store import Store

SEED = 20261201
FIRST_WEEK = datetime(2026, 10, 12, tzinfo=UTC)  # a Monday
WEEKS = 6
PER_WEEK = 150
FIX_AT = datetime(2026, 11, 2, tzinfo=UTC)  # release 4.3.0: the new email prompt
MODE = "wrong tone email"
WHO = "demo"

CUSTOMERS = ["Dana Whitfield", "Ravi Menon", "Sofia Marquez", "Tom Becker", "Aiko Tanaka", "Lena Fischer"]
TOPICS = ["the API key rotation outage on Tuesday", "an unexpected invoice for ap-south",
          "webhooks arriving twice", "slow uploads to eu-west storage", "SSO logins failing after renewal"]
RUDE = ("This was caused by your own configuration, as the docs clearly say. We will refund the whole year "
        "and guarantee it never happens again.")
KIND = "Thank you for reporting {topic}, and I'm sorry for the disruption. Our engineers deployed a fix at {hour}:20 " \
       "UTC; if you still see the problem, reply with your workspace id and we will look at it first thing."


def _email(week: int, i: int, when: datetime, rng: random.Random, dims: dict[str, str]) -> tuple[TraceRecord, bool]:
    customer, topic = rng.choice(CUSTOMERS), rng.choice(TOPICS)
    first = customer.split()[0]
    rate = (0.45 if dims["persona"] == "non-technical manager" else 0.25) if when < FIX_AT else 0.04
    rude = rng.random() < rate
    body = RUDE if rude else KIND.format(topic=topic, hour=rng.randint(9, 17))
    email = {"to": [f"{first.lower()}@customer.example"], "subject": f"Re: Problem with {topic}",
             "body": f"Hi {first},\n\n{body}\n\nBest regards,\nNimbus Support"}
    return _record(week, i, when, rng, dims, "draft-email", {"instruction": "Draft a reply",
                   "email": f"From: {customer}\nSubject: Problem with {topic}\n\nWe ran into {topic}. What happened?"},
                   email, ["email", "support"]), rude


def _answer(week: int, i: int, when: datetime, rng: random.Random, dims: dict[str, str]) -> TraceRecord:
    _, title, text, _ = rng.choice(DOCS)
    question = f"{rng.choice(['How do I', 'Can I', 'Why does'])} {title.lower()}?"
    return _record(week, i, when, rng, dims, "rag-answer", {"question": question},
                   f"According to **{title}** [1]: {text}", ["rag", "console"])


def _record(week: int, i: int, when: datetime, rng: random.Random, dims: dict[str, str], name: str, input: object,
            output: object, tags: list[str]) -> TraceRecord:
    release = "4.3.0" if when >= FIX_AT else "4.2.1"
    return TraceRecord(source="demo-production", source_id=f"prod-w{week}-{i:03d}", name=name, timestamp=when,
                       end_time=when + timedelta(milliseconds=rng.randint(800, 4000)), input=input, output=output,
                       tags=tags, environment=rng.choice(["production-eu", "production-eu", "production-us"]),
                       release=release, user_id=f"user-{rng.randint(1, 400):03d}", dimensions=dims,
                       metadata={"app_version": release})


def production_traces() -> tuple[list[list[TraceRecord]], set[str]]:
    """The six weeks of traces (one list per week) and the source ids of the wrong-tone emails."""
    rng = random.Random(SEED)
    weeks: list[list[TraceRecord]] = []
    rude: set[str] = set()
    for week in range(WEEKS):
        start = FIRST_WEEK + timedelta(weeks=week)
        records = []
        for i in range(PER_WEEK):
            when = start + timedelta(seconds=rng.randrange(7 * 24 * 3600))
            dims = {d: rng.choice(v) for d, v in DIMENSIONS.items()}
            if rng.random() < 0.35:
                record, is_rude = _email(week, i, when, rng, dims)
                if is_rude:
                    rude.add(record.source_id)
            else:
                record = _answer(week, i, when, rng, dims)
            records.append(record)
        weeks.append(records)
    return weeks, rude


def add_demo_production(store: Store, project_id: int) -> list[int]:
    """Add the weekly production runs (idempotent: nothing when the project has production runs,
    or no validated judge with recorded answers). Returns the run ids."""
    if not list_runs(store, project_id).empty:
        return []
    recorded = {mode for mode, _ in ERROR_RATES}
    candidates = [judge_choice(store, j) for j in list_judges(store, project_id) if j.mode_name in recorded]
    judges = [c for c in candidates
              if c.validated and c.version and (c.mode, int(c.version.lstrip("v"))) in ERROR_RATES]
    if not judges:
        return []
    weeks, rude = production_traces()
    ids = store.add_traces(project_id, [r for week in weeks for r in week]).trace_ids  # one write for all weeks
    runs = []
    for week, records in enumerate(weeks):
        week_ids = ids[week * PER_WEEK:(week + 1) * PER_WEEK]
        start = FIRST_WEEK + timedelta(weeks=week)
        end = start + timedelta(weeks=1)
        answers = {
            j.version_id: {tid: recorded_answer(j.mode, int(j.version.lstrip("v")), r.source_id, r.name,  # type: ignore[union-attr]
                                                MODE if r.source_id in rude else None)
                           for tid, r in zip(week_ids, records, strict=True)}
            for j in judges}
        sample = Sample(week_ids, {"source": "demo", "method": "all", "n": len(week_ids), "of": len(week_ids),
                                   "note": "generated demo production traffic, one week"}, start, end)
        runs.append(record_run(store, project_id, judges, sample, answers, name=f"Week of {start:%b %d}",
                               who=WHO, origin=RECORDED, when=end))
    return runs


__all__ = ["FIX_AT", "add_demo_production", "production_traces"]

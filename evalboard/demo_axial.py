"""The demo's axial coding, and failure notes with known modes for tests and benchmarks.

`add_demo_taxonomy` turns the demo's open coding into an accepted taxonomy the way a team would:
the names Maya and Li coined for the same families are merged into the canonical modes of
`demo.FAILURE_MODES` (each merge kept in the history), the notes nobody gave a mode are placed
by an axial run, and a second round of traces, drawn after a fix, is labelled with the accepted
modes, so the round comparison on the Prevalence page shows a real difference.

`synthetic_notes` writes first-failure notes for the six demo modes in many phrasings (shared
words across modes, shorthand, typos, filler), with the mode each was written for: the known
answer the clustering tests and the benchmark score against.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# ------------------------------------------------------------------ notes with known modes

# Per mode: templates whose {slots} are filled from SLOTS. As in real notes, each names what
# went wrong with one of a few anchor words of its family ({cite}: citation, source,
# reference...), but the anchors vary, templates differ in wording, and words such as "page",
# "docs", "answer", "user", "plan" and "pricing" occur in several families, so word overlap
# alone does not separate them. VAGUE notes name no family at all ("wrong answer"): a share of
# them is noise no method can place, which bounds the reachable agreement.
TEMPLATES: dict[str, list[str]] = {
    "unsupported citation": [
        "{cite} for the {page} page does not say this",
        "{cite} [{n}] does not back up the claim",
        "{cite} {n} is unrelated to what the answer claims",
        "the {page} docs are the {cite} but say nothing like that",
        "made-up support from a {cite}, the {page} page never mentions it",
        "the linked {cite} contradicts the sentence it is attached to",
        "claim about {topic} has a {cite} that does not contain it",
        "wrong {cite}",
        "bad {cite}: [{n}] points to {page}, which is about something else",
        "{cite} does not support the statement on {topic}",
    ],
    "outdated version": [
        "uses the {old} command, we are on v4",
        "{old} nimbus cli syntax",
        "instructions are for the {old} release",
        "recommends `keys regenerate` from the {old} version; v4 uses rotate",
        "describes {old} behaviour of {topic}",
        "{old} steps for {topic}, that menu was removed in v4",
        "mentions the {old} console which no longer exists",
        "answer is for an {old} version of the cli",
        "{old} flags in the command, they fail on the current version",
        "{old} docs version used for {topic}",
    ],
    "invented pricing": [
        "{plan} plan {price} is wrong (${amount} instead of $29)",
        "invents a free tier for {topic}, not on the {price} page",
        "made up a {price} for the {plan} plan",
        "says {topic} is free, the {price} page says otherwise",
        "quotes ${amount} per seat, no such {price}",
        "hallucinated discount on the {plan} plan {price}",
        "claims unlimited {topic} on {plan}, wrong {price}",
        "{price} made up",
        "{price} of {plan} invented, docs only list $29 per seat",
        "promises a {plan} plan {price} we do not sell",
    ],
    "ignored constraint": [
        "user said {os} only, answer {ignores} it and gives {other_os} steps",
        "{ignores} that the user is on the {plan} plan",
        "the user asked for {region} and the answer {ignores} the region",
        "gives {other_os} instructions, {ignores} that the user is on {os}",
        "user explicitly excluded {other_os}, answer {ignores} that constraint",
        "{ignores} the constraint in the question ({os})",
        "{ignores} the user's stated limit",
        "answer {ignores} the requirement to stay in {region}",
        "user wrote no {other_os} machines, answer {ignores} it",
        "{ignores} the user's condition about {topic}",
    ],
    "tool error hidden": [
        "{tool} {failed} but the answer says everything is fine",
        "status check {failed} and the reply claims fully operational",
        "ticket creation {failed}, answer invents a ticket number",
        "hides that the {tool} call {failed}",
        "{tool} {failed}, answer pretends it worked",
        "upstream {tool} {failed}, user told all good",
        "no mention that the {tool} lookup {failed}",
        "says ticket opened but the {tool} {failed}",
        "{tool} {failed} and that is not surfaced",
        "{tool} {failed}, result made up",
    ],
    "wrong tone email": [
        "{email} blames the customer for the outage",
        "{email} is {rude} and promises a full-year refund",
        "{rude} {email}",
        "{email} is {rude} to the customer",
        "{email} promises compensation support cannot approve, {rude}",
        "{rude} tone in the {email} to {name}",
        "{email} blames {name}'s configuration, {rude}",
        "{email} sounds {rude}, not empathetic",
        "{email} guarantees it never happens again, and the tone is {rude}",
        "{rude} wording in the {email}",
    ],
}
VAGUE = ["wrong answer", "bad response", "not what the user asked", "answer is misleading",
         "incorrect info on the {page} page", "answer wrong for {topic}", "confusing reply",
         "this is not right", "user would be unhappy with this", "needs review"]

SLOTS: dict[str, list[str]] = {
    "cite": ["citation", "cited source", "source", "citation"],
    "old": ["v3", "old v3", "outdated", "deprecated v3"],
    "price": ["price", "pricing", "price"],
    "ignores": ["ignores", "ignores", "disregards"],
    "failed": ["failed", "errored", "timed out", "returned an error"],
    "email": ["email", "email draft", "drafted email", "reply email"],
    "rude": ["rude", "curt", "condescending", "rude and accusatory"],
    "page": ["pricing", "SSO", "webhooks", "API keys", "regions", "rate limits", "CLI install"],
    "topic": ["SSO", "webhooks", "key rotation", "autoscaling", "log export", "lifecycle rules",
              "storage", "the pricing"],
    "plan": ["Team", "Starter", "Enterprise"],
    "amount": ["19", "9", "49", "5"],
    "os": ["Linux", "macOS", "Windows"],
    "other_os": ["Windows", "PowerShell", "Linux"],
    "region": ["eu-west", "ap-south", "us-east"],
    "tool": ["check_service_status", "create_support_ticket", "get_workspace", "status tool",
             "tool call", "lookup"],
    "name": ["Dana", "Ravi", "Sofia", "Tom"],
    "n": ["1", "2", "3"],
}
OPENERS = ["", "", "", "the answer ", "bot ", "response ", "hmm, ", "again: ", "the reply "]
TAILS = ["", "", "", " - needs fixing", " again", " (see trace)", " for the user",
         " which confused the user", ", the docs page says otherwise", " in the answer"]
TYPOS = {"the": "teh", "answer": "anwser", "user": "usr", "page": "pg", "price": "prcie",
         "email": "emial", "failed": "faild", "version": "verison", "citation": "citaton"}


@dataclass(frozen=True)
class SyntheticNote:
    text: str
    mode: str


def synthetic_notes(n: int, *, seed: int = 0, typo_rate: float = 0.08,
                    vague_rate: float = 0.08) -> list[SyntheticNote]:
    """`n` failure notes spread over the six demo modes (unequal shares, like real traces), each
    a template with its slots filled, an optional opener and tail shared by all modes, and words
    misspelt at `typo_rate`. A `vague_rate` share are VAGUE notes that name no family (still
    counted under the mode they were drawn for: the noise a real note set has)."""
    rng = random.Random(seed)
    modes = list(TEMPLATES)
    weights = [5, 3, 2, 2, 4, 1]  # a long tail, as in real error analysis
    out = []
    for _ in range(n):
        mode = rng.choices(modes, weights=weights)[0]
        template = rng.choice(VAGUE if rng.random() < vague_rate else TEMPLATES[mode])
        core = template.format_map(
            {k: rng.choice(v) for k, v in SLOTS.items()})
        text = rng.choice(OPENERS) + core + rng.choice(TAILS)
        words = [TYPOS.get(w, w) if rng.random() < typo_rate else w for w in text.split()]
        out.append(SyntheticNote(" ".join(words), mode))
    return out


# ------------------------------------------------------------------ the demo's taxonomy

# What counts and what does not, for the canonical modes of demo.FAILURE_MODES.
BOUNDARIES: dict[str, tuple[str, str]] = {
    "unsupported citation": (
        "A cited page is real but does not contain the claim it is attached to.",
        "A correct citation to a page that is itself outdated (outdated version); a missing citation."),
    "outdated version": (
        "Commands, menus or behaviour of v3 or earlier presented as current.",
        "Correct v4 steps that are merely incomplete."),
    "invented pricing": (
        "A price, discount or plan feature that is not on the pricing page.",
        "A correct price quoted without a citation (unsupported citation if a page is cited)."),
    "ignored constraint": (
        "The user stated a platform, plan or region and the answer contradicts it.",
        "Constraints the user never stated; answers that cover several platforms including theirs."),
    "tool error hidden": (
        "A tool call failed or timed out and the answer claims success or invents its result.",
        "A tool error the answer reports honestly; slow tools that succeeded."),
    "wrong tone email": (
        "A drafted email blames the customer, is curt, or promises what support cannot grant.",
        "Emails that are polite but factually wrong (use the factual mode)."),
}
DEMO_REVIEWER = "maya"
ROUND2_NAME = "Round 2: after the fix"
ROUND2_SIZE = 60
ROUND2_LABELLED_BY_LI = 30


def _truth_of_note(note: str) -> str | None:
    """The demo mode a note was written for (the demo's notes come from demo.NOTES)."""
    from evalboard.demo import NOTES

    for mode, notes in NOTES.items():
        if note in {n.format(doc="Plans and pricing") for n in notes}:
            return mode
    return None


def add_demo_taxonomy(store, project_id: int) -> int:  # noqa: ANN001 - Store (import cycle)
    """Give the demo project an accepted taxonomy and a second round to compare; returns the
    second round's id.

    1. The canonical modes are defined (name, definition, what counts, what does not), and the
       names Maya and Li coined for the same families are merged into them: each merge is in
       the taxonomy history.
    2. An axial run over round 1's notes places the notes nobody gave a mode (provenance
       "axial:run-<id>"), and the two style remarks that are no failure are discarded.
    3. Round 2 holds 60 new traces of release 4.3 ("after the fix": tool errors are now admitted
       and a citation check removes most unsupported citations), labelled by Maya (all) and Li
       (the first 30) with the accepted modes and the failing step.
    """
    from evalboard import coding
    from evalboard.axial import clustering, taxonomy
    from evalboard.demo import CODED_MODES, DEMO_SEED, FAILURE_MODES

    by_name = {r.name.lower(): int(r.id) for r in coding.list_modes(store, project_id, include_inactive=True).itertuples()}
    for mode, definition in FAILURE_MODES.items():
        includes, excludes = BOUNDARIES[mode]
        if mode in by_name:
            canonical = by_name[mode]
            taxonomy.update_mode(store, project_id, canonical, DEMO_REVIEWER, definition=definition,
                                 includes=includes, excludes=excludes)
        else:
            canonical = taxonomy.create_mode(store, project_id, mode, DEMO_REVIEWER, definition=definition,
                                             includes=includes, excludes=excludes)
        coined = [by_name[c[mode].lower()] for c in CODED_MODES.values()
                  if c[mode].lower() in by_name and c[mode].lower() != mode]
        if coined:
            taxonomy.merge_modes(store, project_id, coined, canonical, DEMO_REVIEWER)

    first_round = next(r for r in store.list_rounds(project_id) if r.name.startswith("Round 1"))
    notes = clustering.failure_notes(store, project_id, round_id=first_round.id)
    groups: dict[str, list[int]] = {}
    for r in notes.itertuples():
        groups.setdefault(_truth_of_note(r.note) or "answer style", []).append(int(r.annotation_id))
    proposals = [clustering.Proposal(key=f"p{i}", name=name, definition=FAILURE_MODES.get(name, ""),
                                     includes=BOUNDARIES.get(name, ("", ""))[0],
                                     excludes=BOUNDARIES.get(name, ("", ""))[1], members=members)
                 for i, (name, members) in enumerate(sorted(groups.items(), key=lambda g: -len(g[1])), start=1)]
    run = clustering.save_run(store, project_id, "manual", notes, proposals, round_id=first_round.id,
                              created_by=DEMO_REVIEWER, params={"method": "manual", "demo": True})
    style = next((p.key for p in run.proposals if p.name == "answer style"), None)
    if style:
        taxonomy.discard_proposal(store, run.id, style, DEMO_REVIEWER)
    taxonomy.accept_proposals(store, run.id, DEMO_REVIEWER)
    return _add_second_round(store, project_id, DEMO_SEED)


def _add_second_round(store, project_id: int, seed: int) -> int:  # noqa: ANN001
    from evalboard.coding import save_annotation
    from evalboard.demo import DIMENSIONS, NOTES, Planted, _email_trace, _rag_trace, _tool_trace

    rng = random.Random(seed + 20)
    records, planted = [], {}
    for i in range(300, 300 + ROUND2_SIZE):
        dims = {d: rng.choice(v) for d, v in DIMENSIONS.items()}
        kind = rng.choices(["rag", "tool", "email"], weights=[6, 3, 2])[0]
        if kind == "email":
            mode = "wrong tone email" if rng.random() < 0.3 else None
            rec = _email_trace(i, dims, rng, mode)
        elif kind == "tool" or dims["intent"] == "account action":
            mode = None  # the fix: tool errors are now reported, never hidden
            rec = _tool_trace(i, dims, rng, mode)
        else:
            options = ["unsupported citation", "outdated version", "ignored constraint"]
            if dims["intent"] == "pricing":
                options.append("invented pricing")
            rate = 0.45 if dims["style"] == "typo-laden" else 0.25
            mode = rng.choice(options) if rng.random() < rate else None
            if mode == "unsupported citation" and rng.random() < 0.8:
                mode = None  # the new citation check catches most of them
            rec = _rag_trace(i, dims, rng, mode)
        rec = rec.model_copy(update={"release": "4.3.0", "tags": [*rec.tags, "release-4.3"],
                                     "metadata": {**rec.metadata, "app_version": "4.3.0"}})
        if mode:
            step = "draft_reply" if mode == "wrong tone email" else "write_answer"
            planted[rec.source_id] = Planted(mode, step)
        records.append(rec)
    ids = store.add_traces(project_id, records).trace_ids
    rnd = store.create_round(project_id, ROUND2_NAME, ids, order_seed=seed + 21,
                             sampling={"method": "all", "n": len(ids), "release": "4.3.0"},
                             description="Every trace of the first day of release 4.3, after the fixes "
                                         "to tool-error handling and the citation check.")
    queue = store.round_trace_ids(rnd.id)
    by_id = dict(zip(ids, records, strict=True))
    for who, miss, upto in (("maya", 0.05, len(queue)), ("li", 0.12, ROUND2_LABELLED_BY_LI)):
        for tid in queue[:upto]:
            truth = planted.get(by_id[tid].source_id)
            sees = (truth is not None) != (rng.random() < miss)
            if sees and truth is not None:
                save_annotation(store, project_id, tid, who, verdict="fail", round_id=rnd.id,
                                note=rng.choice(NOTES[truth.mode]).format(doc="Plans and pricing"),
                                modes=[truth.mode], failure_step=truth.step)
            elif sees:
                save_annotation(store, project_id, tid, who, verdict="fail", round_id=rnd.id,
                                note="answer is too long for a simple question")
            else:
                save_annotation(store, project_id, tid, who, verdict="pass", round_id=rnd.id)
    return rnd.id

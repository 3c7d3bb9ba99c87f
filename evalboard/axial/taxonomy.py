"""Reviewing proposals into a taxonomy of failure modes, and keeping its history.

Two layers, both recorded in `taxonomy_events` (who, when, what, before and after):

- proposals of a clustering run (`edit_proposal`, `merge_proposals`, `split_proposal`,
  `move_notes`, `discard_proposal`, `add_proposal`) change only the run, until
- `accept_proposals` turns proposals into failure modes: an existing mode with the same name
  (case-insensitive) is reused, and every member note's annotation gets the mode in
  `annotation_modes` with provenance "axial:run-<id>" (modes already picked in open coding stay).

Accepted modes change through `create_mode`, `update_mode`, `merge_modes`, `split_mode`,
`move_assignments`, `assign_mode` and `retire_mode`. The counts stay consistent by construction:
an annotation holds a mode at most once (the table's primary key), a merge moves every
assignment of the merged modes to the target (dropping only duplicates, so the target's count
is the size of the union), and a split or move takes assignments from one mode to another.
Merge keeps each assignment's provenance (the note still led to that family); split, move and
assign record the person who did it. Merged modes keep their row with status "merged" and
retired ones "retired", so history can still name them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from evalboard.axial.clustering import ClusterRun, Proposal, lock_run, write_run
from evalboard.db import annotation_modes, annotations, failure_modes, taxonomy_events, traces
from evalboard.store import Store, StoreError

ACTIVE = "active"


def _clean_name(name: str) -> str:
    clean = " ".join(str(name).split())
    if not clean:
        raise StoreError("A failure mode needs a name.")
    if len(clean) > 200:
        raise StoreError("A failure mode name is at most 200 characters.")
    return clean


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise StoreError("Say who you are (your name in the sidebar) before changing the taxonomy.")
    return actor


def _event(conn: Connection, project_id: int, actor: str, action: str, summary: str, *,
           mode_id: int | None = None, run_id: int | None = None, before: Any = None,
           after: Any = None) -> None:
    conn.execute(insert(taxonomy_events).values(
        project_id=project_id, mode_id=mode_id, run_id=run_id, actor=actor, action=action,
        summary=summary, before=before, after=after))


def _mode_row(conn: Connection, project_id: int, mode_id: int) -> dict[str, Any]:
    row = conn.execute(select(failure_modes).where(failure_modes.c.id == mode_id,
                                                   failure_modes.c.project_id == project_id)).first()
    if row is None:
        raise StoreError(f"No failure mode {mode_id} in this project.")
    return {k: row._mapping[k] for k in ("id", "name", "definition", "includes", "excludes", "status")}


def _by_name(conn: Connection, project_id: int, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(failure_modes.c.id).where(
        failure_modes.c.project_id == project_id,
        func.lower(failure_modes.c.name) == name.lower())).first()
    return None if row is None else _mode_row(conn, project_id, row.id)


def _members(conn: Connection, mode_id: int) -> dict[int, str]:
    """annotation id -> provenance of every assignment of the mode."""
    return dict(conn.execute(select(annotation_modes.c.annotation_id, annotation_modes.c.provenance)
                             .where(annotation_modes.c.mode_id == mode_id)).all())


def _assign(conn: Connection, annotation_ids: Sequence[int], mode_id: int, provenance: str) -> list[int]:
    """Give the mode to these annotations; returns those that did not have it yet."""
    have = set(conn.execute(select(annotation_modes.c.annotation_id).where(
        annotation_modes.c.mode_id == mode_id)).scalars())
    wanted = [a for a in dict.fromkeys(int(x) for x in annotation_ids) if a not in have]
    # A label undone since the clustering run has no row any more: nothing to assign there.
    alive: set[int] = set()
    for i in range(0, len(wanted), 900):
        alive.update(conn.execute(select(annotations.c.id).where(
            annotations.c.id.in_(wanted[i:i + 900]))).scalars())
    new = [a for a in wanted if a in alive]
    if new:
        conn.execute(insert(annotation_modes), [
            {"annotation_id": a, "mode_id": mode_id, "provenance": provenance[:300]} for a in new])
    return new


def _check_annotations(conn: Connection, project_id: int, annotation_ids: Sequence[int]) -> None:
    ids = list(dict.fromkeys(int(a) for a in annotation_ids))
    found = set(conn.execute(select(annotations.c.id).where(
        annotations.c.project_id == project_id, annotations.c.id.in_(ids))).scalars()) if ids else set()
    missing = [a for a in ids if a not in found]
    if missing:
        raise StoreError(f"Annotations {missing[:5]} are not in this project.")


# -- proposals of a run --------------------------------------------------------------------

def _proposal_dict(p: Proposal) -> dict[str, Any]:
    return {"key": p.key, "name": p.name, "definition": p.definition, "includes": p.includes,
            "excludes": p.excludes, "notes": len(p.members), "status": p.status}


def _change_run(store: Store, run_id: int, actor: str, action: str, fn: Any) -> ClusterRun:
    """Apply `fn(run) -> (summary, before, after)` to a locked run and record the event."""
    actor = _actor(actor)
    with store.engine.begin() as conn:
        run = lock_run(conn, run_id)
        summary, before, after = fn(run)
        write_run(conn, run)
        _event(conn, run.project_id, actor, action, summary, run_id=run_id, before=before, after=after)
    return run


def _open(run: ClusterRun, key: str) -> Proposal:
    p = run.proposal(key)
    if p.status == "accepted":
        raise StoreError(f"'{p.name}' is already accepted: change it in the taxonomy instead.")
    return p


def edit_proposal(store: Store, run_id: int, key: str, actor: str, *, name: str | None = None,
                  definition: str | None = None, includes: str | None = None,
                  excludes: str | None = None) -> ClusterRun:
    """Rename a proposal or rewrite its definition, what counts and what does not."""
    def fn(run: ClusterRun) -> tuple[str, Any, Any]:
        p = _open(run, key)
        before = _proposal_dict(p)
        if name is not None:
            clean = _clean_name(name)
            if any(o.key != key and o.status != "discarded" and o.name.lower() == clean.lower()
                   for o in run.proposals):
                raise StoreError(f"Another proposal is already named '{clean}': merge them instead.")
            p.name = clean
        for attr, value in (("definition", definition), ("includes", includes), ("excludes", excludes)):
            if value is not None:
                setattr(p, attr, value.strip())
        return f"edited proposal '{before['name']}'", before, _proposal_dict(p)
    return _change_run(store, run_id, actor, "proposal-edit", fn)


def add_proposal(store: Store, run_id: int, actor: str, name: str, *, definition: str = "",
                 includes: str = "", excludes: str = "", members: Sequence[int] = ()) -> ClusterRun:
    """A new proposal made by hand, optionally taking notes from wherever they are."""
    def fn(run: ClusterRun) -> tuple[str, Any, Any]:
        clean = _clean_name(name)
        if any(o.status != "discarded" and o.name.lower() == clean.lower() for o in run.proposals):
            raise StoreError(f"A proposal named '{clean}' exists already.")
        p = Proposal(key=run.next_key(), name=clean, definition=definition.strip(),
                     includes=includes.strip(), excludes=excludes.strip())
        run.proposals.append(p)
        _take(run, members, p)
        return f"added proposal '{clean}'", None, _proposal_dict(p)
    return _change_run(store, run_id, actor, "proposal-add", fn)


def _take(run: ClusterRun, annotation_ids: Sequence[int], target: Proposal | None) -> list[int]:
    """Move notes of the run into `target` (None: unassigned), from wherever they are."""
    known = {n.annotation_id for n in run.notes}
    ids = [int(a) for a in dict.fromkeys(annotation_ids)]
    unknown = [a for a in ids if a not in known]
    if unknown:
        raise StoreError(f"Notes {unknown[:5]} are not part of run {run.id}.")
    for p in run.proposals:
        if p.status == "accepted" and p is not target and any(a in p.members for a in ids):
            raise StoreError(f"'{p.name}' is accepted: move its notes in the taxonomy instead.")
    moving = set(ids)
    for p in run.proposals:
        if p is not target:
            p.members = [m for m in p.members if m not in moving]
    run.unassigned = [m for m in run.unassigned if m not in moving]
    if target is None:
        run.unassigned.extend(ids)
    else:
        target.members.extend(m for m in ids if m not in target.members)
    return ids


def move_notes(store: Store, run_id: int, annotation_ids: Sequence[int], to_key: str | None,
               actor: str) -> ClusterRun:
    """Move single notes to another proposal (or to the unassigned notes with `to_key=None`)."""
    def fn(run: ClusterRun) -> tuple[str, Any, Any]:
        target = _open(run, to_key) if to_key else None
        if target is not None and target.status == "discarded":
            raise StoreError(f"'{target.name}' was discarded; restore it first.")
        where = {m: p.key for p in run.proposals for m in p.members}
        ids = _take(run, annotation_ids, target)
        name = target.name if target else "unassigned"
        return (f"moved {len(ids)} notes to '{name}'", {"from": {str(a): where.get(a) for a in ids}},
                {"to": to_key, "notes": ids})
    return _change_run(store, run_id, actor, "proposal-move", fn)


def merge_proposals(store: Store, run_id: int, keys: Sequence[str], actor: str, *,
                    name: str | None = None) -> ClusterRun:
    """Merge proposals into the first of `keys` (renamed to `name` when given)."""
    if len(set(keys)) < 2:
        raise StoreError("Pick at least two proposals to merge.")

    def fn(run: ClusterRun) -> tuple[str, Any, Any]:
        parts = [_open(run, k) for k in dict.fromkeys(keys)]
        target, others = parts[0], parts[1:]
        before = [_proposal_dict(p) for p in parts]
        for o in others:
            target.members.extend(m for m in o.members if m not in target.members)
            target.top_terms = list(dict.fromkeys(target.top_terms + o.top_terms))[:8]
            o.members = []
        run.proposals = [p for p in run.proposals if p not in others]
        if name:
            target.name = _clean_name(name)
        return (f"merged {', '.join(repr(b['name']) for b in before)} into '{target.name}'",
                before, _proposal_dict(target))
    return _change_run(store, run_id, actor, "proposal-merge", fn)


def split_proposal(store: Store, run_id: int, key: str, annotation_ids: Sequence[int], new_name: str,
                   actor: str, *, definition: str = "") -> ClusterRun:
    """Split the given notes of a proposal off into a new proposal named `new_name`."""
    def fn(run: ClusterRun) -> tuple[str, Any, Any]:
        source = _open(run, key)
        ids = [int(a) for a in annotation_ids]
        if not ids:
            raise StoreError("Pick the notes that go into the new proposal.")
        outside = [a for a in ids if a not in source.members]
        if outside:
            raise StoreError(f"Notes {outside[:5]} are not in '{source.name}'.")
        if len(ids) == len(source.members):
            raise StoreError("Splitting off every note is a rename: rename the proposal instead.")
        clean = _clean_name(new_name)
        if any(o.status != "discarded" and o.name.lower() == clean.lower() for o in run.proposals):
            raise StoreError(f"A proposal named '{clean}' exists already: move the notes there.")
        before = _proposal_dict(source)
        new = Proposal(key=run.next_key(), name=clean, definition=definition.strip())
        run.proposals.append(new)
        _take(run, ids, new)
        return (f"split {len(ids)} notes of '{source.name}' into '{clean}'", before,
                [_proposal_dict(source), _proposal_dict(new)])
    return _change_run(store, run_id, actor, "proposal-split", fn)


def discard_proposal(store: Store, run_id: int, key: str, actor: str, *, restore: bool = False) -> ClusterRun:
    """Discard a proposal (its notes are not assigned on accept), or restore a discarded one."""
    def fn(run: ClusterRun) -> tuple[str, Any, Any]:
        p = _open(run, key)
        before = _proposal_dict(p)
        p.status = "proposed" if restore else "discarded"
        verb = "restored" if restore else "discarded"
        return f"{verb} proposal '{p.name}'", before, _proposal_dict(p)
    return _change_run(store, run_id, actor, "proposal-restore" if restore else "proposal-discard", fn)


def accept_proposals(store: Store, run_id: int, actor: str, keys: Sequence[str] | None = None) -> ClusterRun:
    """Accept proposals (all still proposed when `keys` is None) into the taxonomy.

    Each becomes a failure mode (reusing an existing mode of the same name, whose definition is
    then updated when the proposal has one), and each member note's annotation gets that mode
    with provenance "axial:run-<id>". Modes picked in open coding stay as they are.
    """
    actor = _actor(actor)
    provenance = f"axial:run-{run_id}"
    with store.engine.begin() as conn:
        run = lock_run(conn, run_id)
        chosen = [p for p in run.proposals if p.status == "proposed" and (keys is None or p.key in keys)]
        if keys is not None:
            missing = set(keys) - {p.key for p in chosen}
            if missing:
                raise StoreError(f"Proposals {sorted(missing)} are not open for acceptance in run {run_id}.")
        if not chosen:
            raise StoreError("Nothing to accept: every proposal is accepted or discarded.")
        names = [p.name.lower() for p in chosen]
        if len(set(names)) < len(names):
            raise StoreError("Two proposals have the same name: merge or rename them first.")
        for p in chosen:
            existing = _by_name(conn, run.project_id, p.name)
            wanted = {"definition": p.definition, "includes": p.includes, "excludes": p.excludes}
            if existing is None:
                mode_id = conn.execute(insert(failure_modes).values(
                    project_id=run.project_id, name=p.name, created_by=actor, status=ACTIVE,
                    **wanted)).inserted_primary_key[0]
                before = None
            else:
                mode_id = existing["id"]
                changes = {k: v for k, v in wanted.items() if v and v != existing[k]}
                if existing["status"] != ACTIVE:
                    changes["status"] = ACTIVE
                if changes:
                    conn.execute(update(failure_modes).where(failure_modes.c.id == mode_id).values(**changes))
                before = existing
            added = _assign(conn, p.members, mode_id, provenance)
            p.status, p.mode_id = "accepted", mode_id
            after = _mode_row(conn, run.project_id, mode_id)
            _event(conn, run.project_id, actor, "accept",
                   f"accepted '{p.name}' from run {run_id}: {len(added)} notes newly assigned",
                   mode_id=mode_id, run_id=run_id, before=before,
                   after={**after, "assigned": added, "provenance": provenance})
        write_run(conn, run)
    return run


# -- the accepted taxonomy -----------------------------------------------------------------

def create_mode(store: Store, project_id: int, name: str, actor: str, *, definition: str = "",
                includes: str = "", excludes: str = "") -> int:
    """A new failure mode made by hand (an existing one of that name is an error)."""
    actor, clean = _actor(actor), _clean_name(name)
    with store.engine.begin() as conn:
        if _by_name(conn, project_id, clean) is not None:
            raise StoreError(f"A failure mode named '{clean}' exists already.")
        mode_id = conn.execute(insert(failure_modes).values(
            project_id=project_id, name=clean, definition=definition.strip(), includes=includes.strip(),
            excludes=excludes.strip(), created_by=actor, status=ACTIVE)).inserted_primary_key[0]
        _event(conn, project_id, actor, "create", f"created '{clean}'", mode_id=mode_id,
               after=_mode_row(conn, project_id, mode_id))
    return mode_id


def update_mode(store: Store, project_id: int, mode_id: int, actor: str, *, name: str | None = None,
                definition: str | None = None, includes: str | None = None,
                excludes: str | None = None) -> None:
    """Rename a mode or rewrite its definition; before and after go to the history."""
    actor = _actor(actor)
    with store.engine.begin() as conn:
        before = _mode_row(conn, project_id, mode_id)
        values: dict[str, Any] = {}
        if name is not None:
            clean = _clean_name(name)
            other = _by_name(conn, project_id, clean)
            if other is not None and other["id"] != mode_id:
                raise StoreError(f"'{clean}' is another mode's name: merge the two instead.")
            values["name"] = clean
        for attr, value in (("definition", definition), ("includes", includes), ("excludes", excludes)):
            if value is not None:
                values[attr] = value.strip()
        values = {k: v for k, v in values.items() if v != before[k]}
        if not values:
            return
        conn.execute(update(failure_modes).where(failure_modes.c.id == mode_id).values(**values))
        action = "rename" if set(values) == {"name"} else "edit"
        _event(conn, project_id, actor, action, f"{'renamed' if action == 'rename' else 'edited'} '{before['name']}'"
               + (f" to '{values['name']}'" if "name" in values else ""),
               mode_id=mode_id, before=before, after=_mode_row(conn, project_id, mode_id))


def merge_modes(store: Store, project_id: int, source_ids: Sequence[int], target_id: int,
                actor: str) -> int:
    """Merge modes into `target_id`: their assignments move to it (keeping their provenance;
    an annotation that already has the target keeps one), and they become status "merged".
    Returns how many assignments moved."""
    actor = _actor(actor)
    sources = [int(s) for s in dict.fromkeys(source_ids) if int(s) != int(target_id)]
    if not sources:
        raise StoreError("Pick at least one mode to merge into the target.")
    moved = 0
    with store.engine.begin() as conn:
        target = _mode_row(conn, project_id, target_id)
        for sid in sources:
            source = _mode_row(conn, project_id, sid)
            members = _members(conn, sid)
            have = set(_members(conn, target_id))
            fresh = {a: p for a, p in members.items() if a not in have}
            if fresh:
                conn.execute(insert(annotation_modes), [
                    {"annotation_id": a, "mode_id": target_id, "provenance": p} for a, p in fresh.items()])
            conn.execute(delete(annotation_modes).where(annotation_modes.c.mode_id == sid))
            conn.execute(update(failure_modes).where(failure_modes.c.id == sid).values(status="merged"))
            moved += len(fresh)
            _event(conn, project_id, actor, "merge",
                   f"merged '{source['name']}' ({len(members)} notes) into '{target['name']}'",
                   mode_id=target_id, before={"source": source, "notes": sorted(members)},
                   after={"target": target, "moved": sorted(fresh), "already_there": sorted(set(members) - set(fresh))})
    return moved


def split_mode(store: Store, project_id: int, mode_id: int, annotation_ids: Sequence[int],
               new_name: str, actor: str, *, definition: str = "", includes: str = "",
               excludes: str = "") -> int:
    """Split these annotations' assignments off `mode_id` into a new mode; returns its id."""
    actor, clean = _actor(actor), _clean_name(new_name)
    ids = [int(a) for a in dict.fromkeys(annotation_ids)]
    if not ids:
        raise StoreError("Pick the notes that go into the new mode.")
    with store.engine.begin() as conn:
        source = _mode_row(conn, project_id, mode_id)
        members = _members(conn, mode_id)
        outside = [a for a in ids if a not in members]
        if outside:
            raise StoreError(f"Annotations {outside[:5]} do not have '{source['name']}'.")
        if _by_name(conn, project_id, clean) is not None:
            raise StoreError(f"A mode named '{clean}' exists already: move the notes to it instead.")
        new_id = conn.execute(insert(failure_modes).values(
            project_id=project_id, name=clean, definition=definition.strip(), includes=includes.strip(),
            excludes=excludes.strip(), created_by=actor, status=ACTIVE)).inserted_primary_key[0]
        conn.execute(delete(annotation_modes).where(annotation_modes.c.mode_id == mode_id,
                                                    annotation_modes.c.annotation_id.in_(ids)))
        _assign(conn, ids, new_id, actor)
        _event(conn, project_id, actor, "split", f"split {len(ids)} notes of '{source['name']}' into '{clean}'",
               mode_id=new_id, before={"source": source, "notes": sorted(members)},
               after={"new": _mode_row(conn, project_id, new_id), "notes": ids})
    return new_id


def move_assignments(store: Store, project_id: int, annotation_ids: Sequence[int], from_mode_id: int,
                     to_mode_id: int, actor: str) -> int:
    """Move single notes from one mode to another; returns how many moved."""
    actor = _actor(actor)
    ids = [int(a) for a in dict.fromkeys(annotation_ids)]
    with store.engine.begin() as conn:
        source = _mode_row(conn, project_id, from_mode_id)
        target = _mode_row(conn, project_id, to_mode_id)
        members = _members(conn, from_mode_id)
        outside = [a for a in ids if a not in members]
        if outside:
            raise StoreError(f"Annotations {outside[:5]} do not have '{source['name']}'.")
        conn.execute(delete(annotation_modes).where(annotation_modes.c.mode_id == from_mode_id,
                                                    annotation_modes.c.annotation_id.in_(ids)))
        _assign(conn, ids, to_mode_id, actor)
        _event(conn, project_id, actor, "move",
               f"moved {len(ids)} notes from '{source['name']}' to '{target['name']}'",
               mode_id=to_mode_id, before={"mode": source["name"], "notes": ids},
               after={"mode": target["name"], "notes": ids})
    return len(ids)


def assign_mode(store: Store, project_id: int, annotation_ids: Sequence[int], mode_id: int,
                actor: str) -> int:
    """Give a mode to more notes by hand (provenance: the person); returns how many were new."""
    actor = _actor(actor)
    with store.engine.begin() as conn:
        mode = _mode_row(conn, project_id, mode_id)
        _check_annotations(conn, project_id, annotation_ids)
        added = _assign(conn, annotation_ids, mode_id, actor)
        if added:
            _event(conn, project_id, actor, "assign", f"assigned '{mode['name']}' to {len(added)} notes",
                   mode_id=mode_id, after={"notes": added})
    return len(added)


def retire_mode(store: Store, project_id: int, mode_id: int, actor: str, *, restore: bool = False) -> None:
    """Retire a mode (kept with its assignments, left out of counts) or bring it back."""
    actor = _actor(actor)
    with store.engine.begin() as conn:
        before = _mode_row(conn, project_id, mode_id)
        status = ACTIVE if restore else "retired"
        conn.execute(update(failure_modes).where(failure_modes.c.id == mode_id).values(status=status))
        _event(conn, project_id, actor, "restore" if restore else "retire",
               f"{'restored' if restore else 'retired'} '{before['name']}'", mode_id=mode_id,
               before=before, after={**before, "status": status})


# -- reading the taxonomy ------------------------------------------------------------------

def taxonomy_table(store: Store, project_id: int, *, include_inactive: bool = False) -> pd.DataFrame:
    """One row per mode: id, name, definition, includes, excludes, status, created_by, notes
    (annotations holding it), traces (distinct traces holding it)."""
    usage = (select(annotation_modes.c.mode_id, func.count().label("notes"),
                    func.count(func.distinct(annotations.c.trace_id)).label("traces"))
             .select_from(annotation_modes.join(annotations, annotations.c.id == annotation_modes.c.annotation_id))
             .group_by(annotation_modes.c.mode_id).subquery())
    q = (select(failure_modes.c.id, failure_modes.c.name, failure_modes.c.definition,
                failure_modes.c.includes, failure_modes.c.excludes, failure_modes.c.status,
                failure_modes.c.created_by, func.coalesce(usage.c.notes, 0), func.coalesce(usage.c.traces, 0))
         .select_from(failure_modes.outerjoin(usage, usage.c.mode_id == failure_modes.c.id))
         .where(failure_modes.c.project_id == project_id)
         .order_by(func.coalesce(usage.c.traces, 0).desc(), failure_modes.c.name))
    if not include_inactive:
        q = q.where(failure_modes.c.status == ACTIVE)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["id", "name", "definition", "includes", "excludes", "status",
                                       "created_by", "notes", "traces"])


def mode_assignments(store: Store, project_id: int, mode_id: int | None = None) -> pd.DataFrame:
    """Which note led to which mode: annotation_id, trace_id, source_id, annotator, note,
    mode_id, mode, provenance, assigned_at."""
    q = (select(annotations.c.id, annotations.c.trace_id, traces.c.source_id, annotations.c.annotator,
                annotations.c.note, failure_modes.c.id, failure_modes.c.name,
                annotation_modes.c.provenance, annotation_modes.c.created_at)
         .select_from(annotation_modes
                      .join(annotations, annotations.c.id == annotation_modes.c.annotation_id)
                      .join(failure_modes, failure_modes.c.id == annotation_modes.c.mode_id)
                      .join(traces, traces.c.id == annotations.c.trace_id))
         .where(annotations.c.project_id == project_id)
         .order_by(failure_modes.c.name, annotations.c.id))
    if mode_id is not None:
        q = q.where(annotation_modes.c.mode_id == mode_id)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["annotation_id", "trace_id", "source_id", "annotator", "note",
                                       "mode_id", "mode", "provenance", "assigned_at"])


def history(store: Store, project_id: int, *, mode_id: int | None = None, limit: int = 500) -> pd.DataFrame:
    """Taxonomy changes, newest first: at, actor, action, summary, mode_id, run_id, before, after."""
    q = (select(taxonomy_events.c.at, taxonomy_events.c.actor, taxonomy_events.c.action,
                taxonomy_events.c.summary, taxonomy_events.c.mode_id, taxonomy_events.c.run_id,
                taxonomy_events.c.before, taxonomy_events.c.after)
         .where(taxonomy_events.c.project_id == project_id)
         .order_by(taxonomy_events.c.id.desc()).limit(limit))
    if mode_id is not None:
        q = q.where(taxonomy_events.c.mode_id == mode_id)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["at", "actor", "action", "summary", "mode_id", "run_id",
                                       "before", "after"])


def _examples(store: Store, project_id: int, per_mode: int) -> dict[int, list[str]]:
    df = mode_assignments(store, project_id)
    df = df[df["note"].str.strip() != ""]
    out: dict[int, list[str]] = {}
    for mode_id, g in df.groupby("mode_id"):
        out[int(mode_id)] = list(dict.fromkeys(g["note"]))[:per_mode]
    return out


def export_markdown(store: Store, project_id: int, *, project_name: str = "", examples: int = 3) -> str:
    """The taxonomy as Markdown: per mode its definition, what counts, what does not, the
    number of traces, and up to `examples` example notes."""
    table = taxonomy_table(store, project_id)
    ex = _examples(store, project_id, examples)
    title = f"# Failure modes{': ' + project_name if project_name else ''}\n"
    parts = [title]
    for r in table.itertuples():
        parts.append(f"\n## {r.name}\n\n{r.definition or '_No definition yet._'}\n")
        if r.includes:
            parts.append(f"\n**Counts:** {r.includes}\n")
        if r.excludes:
            parts.append(f"\n**Does not count:** {r.excludes}\n")
        parts.append(f"\n*{r.traces} traces, {r.notes} labels.*\n")
        if ex.get(int(r.id)):
            parts.append("\nExamples:\n\n" + "\n".join(f"- {' '.join(n.split())}" for n in ex[int(r.id)]) + "\n")
    if table.empty:
        parts.append("\n_No accepted failure modes yet._\n")
    return "".join(parts)


def export_csv(store: Store, project_id: int, *, examples: int = 3) -> bytes:
    """The taxonomy as CSV: name, definition, includes, excludes, traces, labels, examples
    (joined with ' | ')."""
    table = taxonomy_table(store, project_id)
    ex = _examples(store, project_id, examples)
    out = pd.DataFrame({
        "name": table["name"], "definition": table["definition"], "includes": table["includes"],
        "excludes": table["excludes"], "traces": table["traces"], "labels": table["notes"],
        "examples": [" | ".join(ex.get(int(i), [])) for i in table["id"]]})
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return buf.getvalue().encode()


def active_mode_names(store: Store, project_id: int) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(failure_modes.c.name).where(
            and_(failure_modes.c.project_id == project_id, failure_modes.c.status == ACTIVE))
            .order_by(failure_modes.c.name)).scalars())

"""Know the queries, part 1: the product context, dimensions and their values, exclusion rules,
and tuples (combinations of one value per dimension) to write queries from."""

import re

import pandas as pd
import streamlit as st

from evalboard import query_store
from evalboard.queries import parse_values_text, suggest_values, values_text
from evalboard.store import StoreError
from evalboard.tuples import (
    Dimension,
    DimensionValue,
    coverage_report,
    full_product,
    full_product_count,
    pairwise_tuples,
    parse_tuples_file,
    sample_tuples,
)
from integrations.llm import LLMCallError, LLMNotConfigured, LLMOutputError
from ui.llm import llm_client, llm_disabled_reason
from ui.state import get_store, require_project

FULL_PRODUCT_CONFIRM = 500  # above this many tuples, generating the full product asks first
FULL_PRODUCT_LIMIT = 100_000  # above this, refuse: sample or use pairwise instead

store = get_store()
project = require_project(store)
pid: int = project.id  # type: ignore[assignment]

st.title("Dimensions and tuples")
st.caption("Real queries vary along a few dimensions (who asks, what they want, how they write). "
           "Define them, combine their values into tuples, then write queries from the tuples on "
           "the Queries page: that keeps synthetic queries as varied as real ones.")


def _lines(message: str) -> list[str]:
    """Split "line 1: ...; line 3: ..." into one message per line."""
    return re.split(r"; (?=line \d+:)", message)


def _flash(kind: str, text: str) -> None:
    st.session_state["dims.flash"] = (kind, text)


flash = st.session_state.pop("dims.flash", None)
if flash:
    getattr(st, flash[0])(flash[1])

# --------------------------------------------------------------------------------- 1. context
st.subheader("1. The product and its users")
with st.form("dims.context"):
    context = st.text_area(
        "What the product does and who uses it", value=project.description, height=130,
        key="dims.context_text",
        help="Included in every prompt (suggested values, generated queries). Same text as on the "
             "Project page.",
        placeholder="e.g. A support assistant in our billing console; users are accountants, "
                    "admins and small-business owners, often in a hurry...")
    if st.form_submit_button("Save context", key="dims.save_context"):
        store.update_project(pid, description=context)
        project = project.model_copy(update={"description": context})
        st.toast("Context saved")
if not project.description.strip():
    st.warning("Describe the product and its users first: every LLM prompt here starts with it.")

# --------------------------------------------------------------------------------- 2. dimensions
st.subheader("2. Dimensions")
dims = query_store.list_dimensions(store, pid)
llm_reason = llm_disabled_reason()
if llm_reason:
    st.caption(f":material/info: LLM suggestions are off. {llm_reason}")


def _move(dim_id: int, offset: int) -> None:
    query_store.move_dimension(store, dim_id, offset)


def _delete(dim_id: int) -> None:
    query_store.delete_dimension(store, dim_id)
    _flash("info", "Dimension deleted. Tuples that used it are listed as not fitting any more.")


def _keep_suggestions(dim_id: int) -> None:
    chosen = st.session_state.get(f"dims.keep.{dim_id}") or []
    offered = {v["name"]: v for v in st.session_state.get(f"dims.suggested.{dim_id}") or []}
    added = query_store.add_dimension_values(
        store, dim_id, [DimensionValue(**offered[name]) for name in chosen if name in offered])
    st.session_state.pop(f"dims.suggested.{dim_id}", None)
    _flash("success", f"Added {added} value{'s' if added != 1 else ''}.")


if not dims:
    st.info("No dimensions yet. Add the first one below, e.g. *user type* (admin, end user), "
            "*expertise* (beginner, expert), *intent* (billing question, bug report).")

for index, dim in enumerate(dims):
    with st.container(border=True):
        head, buttons = st.columns([5, 2], vertical_alignment="center")
        head.markdown(f"**{dim.name}**" + (f" - {dim.description}" if dim.description else "")
                      + "  \n" + ", ".join(f"`{v.name}`" for v in dim.values))
        up, down, drop = buttons.columns(3)
        up.button(":material/arrow_upward:", key=f"dims.up.{dim.id}", help="Move up",
                  disabled=index == 0, on_click=_move, args=(dim.id, -1))
        down.button(":material/arrow_downward:", key=f"dims.down.{dim.id}", help="Move down",
                    disabled=index == len(dims) - 1, on_click=_move, args=(dim.id, 1))
        drop.button(":material/delete:", key=f"dims.delete.{dim.id}", help="Delete this dimension",
                    on_click=_delete, args=(dim.id,))
        with st.expander("Edit"):
            with st.form(f"dims.edit.{dim.id}"):
                name = st.text_input("Name", value=dim.name, key=f"dims.edit_name.{dim.id}")
                about = st.text_input("Description", value=dim.description, key=f"dims.edit_about.{dim.id}")
                text = st.text_area("Values, one per line (optionally `value: description`)",
                                    value=values_text(dim.values), key=f"dims.edit_values.{dim.id}")
                if st.form_submit_button("Save", key=f"dims.edit_save.{dim.id}"):
                    try:
                        query_store.update_dimension(store, dim.id, Dimension(
                            name=name, description=about, values=parse_values_text(text)))
                    except (ValueError, StoreError) as exc:
                        for line in _lines(str(exc)):
                            st.error(line)
                    else:
                        _flash("success", f"Saved dimension '{name.strip()}'.")
                        st.rerun()
        if st.button("Suggest values", key=f"dims.suggest.{dim.id}", disabled=llm_reason is not None,
                     help=llm_reason or "Ask the LLM for more values of this dimension; you choose which to keep.",
                     icon=":material/auto_awesome:"):
            try:
                with st.spinner("Asking the LLM..."):
                    offered = suggest_values(llm_client(store), project.description, dim.name,
                                             dim.description, dims, dim.value_names)
                st.session_state[f"dims.suggested.{dim.id}"] = [v.model_dump() for v in offered]
            except (LLMCallError, LLMOutputError, LLMNotConfigured, ValueError) as exc:
                st.error(f"No suggestions: {exc}")
        offered = st.session_state.get(f"dims.suggested.{dim.id}")
        if offered is not None:
            if not offered:
                st.info("The LLM suggested nothing new.")
            else:
                st.dataframe(pd.DataFrame(offered), hide_index=True)
                st.multiselect("Keep these values", [v["name"] for v in offered], key=f"dims.keep.{dim.id}")
                st.button("Add the values kept", key=f"dims.keep_add.{dim.id}",
                          on_click=_keep_suggestions, args=(dim.id,))

with st.form("dims.add", clear_on_submit=True):
    st.markdown("**Add a dimension**")
    left, right = st.columns(2)
    new_name = left.text_input("Name", key="dims.new_name", placeholder="e.g. expertise")
    new_about = right.text_input("Description", key="dims.new_about",
                                 placeholder="e.g. how well the user knows the product")
    new_values = st.text_area("Values, one per line (optionally `value: description`)",
                              key="dims.new_values",
                              placeholder="beginner: first week, does not know the vocabulary\nexpert")
    if st.form_submit_button("Add dimension", key="dims.add_submit", type="primary"):
        try:
            query_store.add_dimension(store, pid, Dimension(
                name=new_name, description=new_about, values=parse_values_text(new_values)))
        except (ValueError, StoreError) as exc:
            for line in _lines(str(exc)):
                st.error(line)
        else:
            _flash("success", f"Added dimension '{new_name.strip()}'.")
            st.rerun()

if not dims:
    st.stop()
plain = [d.as_dimension() for d in dims]

# --------------------------------------------------------------------------------- 3. exclusions
st.subheader("3. Combinations that never occur")
saved_rules = query_store.exclusions_text(store, pid)
with st.form("dims.exclusions"):
    rules_text = st.text_area(
        "Exclusion rules, one per line", value=saved_rules, key="dims.rules",
        placeholder="user_type=admin, expertise=beginner\n# lines starting with # are comments",
        help="A tuple with every dimension=value pair of a rule is never made. One pair bans a value.")
    if st.form_submit_button("Save rules", key="dims.rules_save"):
        try:
            rules = query_store.save_exclusions(store, pid, rules_text)
        except ValueError as exc:
            st.error("Not saved; fix these lines:")
            for line in _lines(str(exc)):
                st.error(line)
        else:
            saved_rules = rules_text
            st.success(f"Saved {len(rules)} rule{'s' if len(rules) != 1 else ''}.")
try:
    exclusions = query_store.project_exclusions(store, pid, plain)
    rules_ok = True
except ValueError as exc:
    exclusions, rules_ok = [], False
    st.warning("The saved rules no longer match the dimensions, so no tuples can be made until "
               "they are fixed: " + str(exc))

# --------------------------------------------------------------------------------- 4. tuples
st.subheader("4. Tuples")
total = full_product_count(plain)
stored_frame = query_store.tuples_frame(store, pid, plain, exclusions)
fitting = stored_frame[stored_frame["problem"] == ""]
fitting_tuples = [{d.name: row[d.name] for d in plain} for _, row in fitting.iterrows()]
report = coverage_report(plain, fitting_tuples, exclusions) if rules_ok else None
c1, c2, c3 = st.columns(3)
c1.metric("Full product", f"{total:,}", help="Every combination, before exclusion rules.")
c2.metric("Stored tuples", f"{len(stored_frame):,}")
c3.metric("Pairs covered", f"{report.covered} / {report.total}" if report else "-",
          help="Pairs of values of two dimensions that appear together in some stored tuple "
               "(pairs that no allowed tuple can hold are not counted).")


def _added(result: query_store.AddedRows, what: str) -> str:
    text = f"Added {result.added} {what} tuple{'s' if result.added != 1 else ''}"
    return text + (f"; {result.existing} were already stored." if result.existing else ".")


pairwise_tab, sample_tab, full_tab, manual_tab, import_tab = st.tabs(
    ["Pairwise", "Random sample", "Full product", "One by hand", "Import"])
with pairwise_tab:
    st.caption("The fewest tuples in which every pair of values of any two dimensions appears at "
               "least once: the best coverage per query written.")
    seed = st.number_input("Seed", min_value=0, value=0, step=1, key="dims.pairwise_seed")
    if st.button("Make pairwise tuples", key="dims.pairwise", type="primary", disabled=not rules_ok):
        made = pairwise_tuples(plain, exclusions, seed=int(seed))
        result = query_store.add_tuples(store, pid, made, "pairwise", seed=int(seed))
        cover = coverage_report(plain, made, exclusions)
        _flash("success", _added(result, "pairwise") + f" They cover {cover.covered} of {cover.total} "
               f"pairs with {len(made)} tuples (the full product has {total:,})."
               + (f" {len(cover.uncoverable)} pairs can never occur under the rules." if cover.uncoverable else ""))
        st.rerun()
with sample_tab:
    left, right = st.columns(2)
    k = left.number_input("How many tuples", min_value=1, value=min(20, total), step=1, key="dims.sample_k")
    sample_seed = right.number_input("Seed", min_value=0, value=0, step=1, key="dims.sample_seed")
    if st.button("Draw a random sample", key="dims.sample", disabled=not rules_ok):
        try:
            drawn = sample_tuples(plain, int(k), seed=int(sample_seed), exclusions=exclusions)
        except ValueError as exc:
            st.error(str(exc))
        else:
            result = query_store.add_tuples(store, pid, drawn.tuples, "sample", seed=int(sample_seed))
            _flash("success", _added(result, "sampled") + (f" Note: {drawn.note}." if drawn.note else ""))
            st.rerun()
with full_tab:
    st.write(f"The full product has **{total:,}** tuples before the exclusion rules.")
    if total > FULL_PRODUCT_LIMIT:
        st.warning(f"That is more than {FULL_PRODUCT_LIMIT:,}: use pairwise or a random sample.")
    confirmed = True
    if FULL_PRODUCT_CONFIRM < total <= FULL_PRODUCT_LIMIT:
        confirmed = st.checkbox(f"Yes, make all {total:,} tuples (writing their queries will take "
                                f"{total:,} LLM requests)", key="dims.full_confirm")
    if st.button("Make every tuple", key="dims.full", disabled=not (rules_ok and confirmed and total <= FULL_PRODUCT_LIMIT)):
        made = full_product(plain, exclusions)
        result = query_store.add_tuples(store, pid, made, "full")
        _flash("success", _added(result, "") + (f" {total - len(made):,} were excluded by the rules."
                                                if total > len(made) else ""))
        st.rerun()
with manual_tab:
    picked = {}
    cols = st.columns(min(len(plain), 4))
    for i, dim in enumerate(plain):
        picked[dim.name] = cols[i % len(cols)].selectbox(dim.name, dim.value_names, key=f"dims.manual.{i}")
    if st.button("Add this tuple", key="dims.manual_add", disabled=not rules_ok):
        rule = next((ex for ex in exclusions if ex.matches(picked)), None)
        if rule is not None:
            st.error(f"This combination is excluded by the rule '{rule}'.")
        else:
            _flash("success", _added(query_store.add_tuples(store, pid, [picked], "manual"), "hand-made"))
            st.rerun()
with import_tab:
    st.caption("CSV with one column per dimension, or JSON / JSONL with one object per tuple. "
               "Bad rows are listed; good rows are kept.")
    upload = st.file_uploader("Tuples file", type=["csv", "json", "jsonl"], key="dims.import_file")
    if upload is not None and st.button("Import tuples", key="dims.import", disabled=not rules_ok):
        try:
            parsed = parse_tuples_file(upload.getvalue(), plain, name=upload.name, exclusions=exclusions)
        except ValueError as exc:
            st.error(str(exc))
        else:
            result = query_store.add_tuples(store, pid, parsed.tuples, "import")
            (st.warning if parsed.errors else st.success)(
                _added(result, "imported") + (f" {len(parsed.errors)} rows were not read:" if parsed.errors else ""))
            if parsed.errors:
                st.dataframe(pd.DataFrame({"problem": parsed.errors}), hide_index=True)

if report is not None and report.missing:
    with st.expander(f"{len(report.missing)} pairs not covered yet"):
        st.write(", ".join(str(p) for p in report.missing[:300]))

if len(stored_frame):
    stale = int((stored_frame["problem"] != "").sum())
    if stale:
        st.warning(f"{stale} stored tuples no longer fit the dimensions or the rules (see the "
                   "problem column); queries are not written for them.")
    event = st.dataframe(stored_frame, hide_index=True, key="dims.tuples", on_select="rerun",
                         selection_mode="multi-row",
                         column_config={"id": st.column_config.NumberColumn(width="small"),
                                        "seed": st.column_config.NumberColumn(format="%d")})
    rows = event["selection"]["rows"] if event else []
    left, right = st.columns(2)
    if left.button(f"Delete {len(rows)} selected", key="dims.delete_selected", disabled=not rows):
        query_store.delete_tuples(store, pid, [int(stored_frame.iloc[r]["id"]) for r in rows])
        st.rerun()
    with right.popover("Delete all tuples"):
        st.write("Queries already written keep their tuple's values.")
        if st.button("Delete all", key="dims.delete_all"):
            query_store.delete_tuples(store, pid)
            st.rerun()
    st.caption("Next: write queries from these tuples on the **Queries** page.")

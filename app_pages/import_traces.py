"""Import files: upload JSONL, JSON, CSV or Parquet; check the shape; map fields if needed."""

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from evalboard.store import StoreError
from integrations.files import FORMATS, FieldMapping, FileImportError, import_file, preview
from ui.state import get_store, require_project

store = get_store()
project = require_project(store)

st.title("Import traces from files")
st.caption("JSONL, JSON (an array, or an object holding one), CSV and Parquet. Recognised without "
           "set-up: OpenAI chat `messages`, Langfuse-style traces with `observations`, and "
           "input/output columns (query/response, question/answer...). Re-importing a file adds "
           "nothing twice; bad rows are listed and the good ones kept.")

uploads = st.file_uploader("Files", type=list(FORMATS) + ["ndjson"], accept_multiple_files=True,
                           key="import.files")
round_name = st.text_input("Also put the imported traces in a round (optional)",
                           key="import.round", placeholder="e.g. Round 2: after the prompt fix")


def _saved(upload) -> Path:  # noqa: ANN001 - streamlit's UploadedFile
    """Uploads are written once to a temporary file so the importer can stream them."""
    paths = st.session_state.setdefault("import.paths", {})
    path = paths.get(upload.file_id)
    if path is None or not Path(path).exists():
        path = Path(tempfile.mkdtemp(prefix="evalboard-upload-")) / Path(upload.name).name
        path.write_bytes(upload.getbuffer())
        paths[upload.file_id] = path
    return Path(path)


for n, upload in enumerate(uploads or []):
    st.subheader(upload.name)
    path = _saved(upload)
    try:
        shape, rows, guessed = preview(path)
    except FileImportError as exc:
        st.error(str(exc))
        continue
    if rows:
        st.dataframe(pd.DataFrame(rows).astype(str), hide_index=True, height=200)
    mapping: FieldMapping | None = None
    if shape:
        st.success(f"Recognised shape: **{shape}**. Fields used: "
                   + ", ".join(f"{k} <- `{v}`" for k, v in guessed.model_dump().items() if v))
    else:
        fields = [""] + sorted(set().union(*(r.keys() for r in rows))) if rows else [""]
        saved = FieldMapping.model_validate(project.settings.get("import_mapping") or {})
        st.warning("This shape is not recognised: say which field holds what. The mapping is "
                   "saved on the project for the next import.")
        cols = st.columns(3)
        values: dict[str, object] = {}
        for i, part in enumerate(["input", "output", "messages", "id", "timestamp", "tags",
                                  "label", "notes", "dimensions", "name"]):
            default = getattr(saved, part)
            values[part] = cols[i % 3].selectbox(
                part, fields, index=fields.index(default) if default in fields else 0,
                key=f"import.map.{n}.{part}")
        values["metadata"] = st.multiselect("metadata (kept as is)", fields[1:],
                                            default=[f for f in saved.metadata if f in fields],
                                            key=f"import.map.{n}.metadata")
        mapping = FieldMapping.model_validate(values)
    if st.button(f"Import {upload.name}", type="primary", key=f"import.go.{n}",
                 disabled=not shape and (mapping is None or not mapping.is_usable())):
        try:
            with st.spinner("Importing..."):
                report = import_file(store, project.id, path, mapping=mapping,  # type: ignore[arg-type]
                                     round_name=round_name.strip() or None, display_name=upload.name)
        except (FileImportError, StoreError) as exc:
            st.error(str(exc))
        else:
            (st.warning if report.skipped else st.success)(report.summary())
            if report.issues:
                issues = pd.DataFrame([vars(i) for i in report.issues])
                st.dataframe(issues, hide_index=True)
                st.download_button("Download the list of bad rows", issues.to_csv(index=False),
                                   file_name=f"{upload.name}.issues.csv", key=f"import.issues.{n}")
            st.page_link("app_pages/traces.py", label="See the traces", icon=":material/list_alt:")

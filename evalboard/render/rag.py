"""RAG view: the question, the retrieved documents, and the answer with its citations linked.

Documents come from retriever spans (type RETRIEVER/RETRIEVAL, or a name containing
"retriev") and from fields named like `documents`, `contexts`, `sources` or `retrieved` in the
output, metadata or input. A document may be a string or a dict with text/content, score,
source/url/title and id.

Citations in the answer ("[1]", "[1, 3]", "[^2]", "【2†source】", or "[doc-id]" when a
document has that id or title) are highlighted and link to the document's anchor. A number
with no such document is marked as a missing citation, and documents the answer never cites
say so: both are common RAG failures worth seeing at a glance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalboard.models import TraceRecord
from evalboard.render.fields import last_content, output_text, pick
from evalboard.render.safe import (
    anchor_prefix,
    attr,
    esc,
    folded,
    markdown_html,
    page,
    section,
    pretty_json,
    text_block,
)

MAX_DOCS = 100
"""Documents shown; more are counted in a note."""
DOC_TEXT_LIMIT = 50_000
"""Characters shown per document."""
_PREVIEW_CHARS = 600

DOC_KEYS = (
    "documents", "docs", "contexts", "context", "sources", "retrieved", "retrieved_documents",
    "retrieved_docs", "retrieved_contexts", "passages", "chunks", "references",
)  # fmt: skip
_TEXT_KEYS = ("text", "content", "page_content", "pagecontent", "chunk", "passage", "snippet",
              "body", "document")  # fmt: skip
_ID_KEYS = ("id", "doc_id", "document_id", "docid", "chunk_id", "source_id")
_TITLE_KEYS = ("title", "name", "filename", "file_name")
_SOURCE_KEYS = ("url", "uri", "link", "href", "source", "path", "file")
_SCORE_KEYS = ("score", "relevance_score", "relevance", "similarity", "distance")
_QUESTION_KEYS = ("question", "query", "q", "input", "user_input", "prompt", "message")
_ANSWER_KEYS = ("answer", "output", "response", "text", "content", "result", "completion")

# One bracketed group: "[1]", "[1, 2]", "[^3]", "[doc-7]". Only digits or known ids count.
_CITE_RE = re.compile(r"\[\^?([^\[\]\n]{1,80})\]|【(\d{1,3})(?:†[^】\n]{0,80})?】")
_NUMBER_RE = re.compile(r"\^?(\d{1,3})")


@dataclass
class Document:
    """A retrieved document as shown: text plus whatever identifies and ranks it."""

    text: str
    doc_id: str | None = None
    title: str | None = None
    source: str | None = None
    score: float | None = None


def _first_str(value: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    found = pick(value, keys)
    return None if found is None or isinstance(found, (dict, list)) else str(found)


def _document(item: Any) -> Document | None:
    if isinstance(item, str):
        return Document(text=item) if item.strip() else None
    if not isinstance(item, Mapping):
        return None if item is None else Document(text=str(item))
    meta = pick(item, ("metadata", "meta"))
    meta = meta if isinstance(meta, Mapping) else {}
    text = pick(item, _TEXT_KEYS)
    if text is None:  # no text field: show the rest of the record
        text = {k: v for k, v in item.items() if str(k).lower() not in ("metadata", "meta")}
    score = pick(item, _SCORE_KEYS)
    if score is None:
        score = pick(meta, _SCORE_KEYS)
    try:
        score = float(score) if score is not None and not isinstance(score, bool) else None
    except (TypeError, ValueError):
        score = None
    return Document(
        text=text if isinstance(text, str) else _json_text(text),
        doc_id=_first_str(item, _ID_KEYS) or _first_str(meta, _ID_KEYS),
        title=_first_str(item, _TITLE_KEYS) or _first_str(meta, _TITLE_KEYS),
        source=_first_str(item, _SOURCE_KEYS) or _first_str(meta, _SOURCE_KEYS),
        score=score,
    )


def _json_text(value: Any) -> str:
    return pretty_json(value, DOC_TEXT_LIMIT)


def _documents_in(value: Any) -> list[Document]:
    """Documents held by a value: a list of documents, or a dict with one of DOC_KEYS."""
    if isinstance(value, Mapping):
        for key in DOC_KEYS:
            found = pick(value, (key,))
            if isinstance(found, list):
                return _documents_in(found)
            if isinstance(found, str) and key == "context":
                return [Document(text=found)]
        return []
    if isinstance(value, list):
        docs = [_document(item) for item in value[: MAX_DOCS * 2]]
        return [doc for doc in docs if doc is not None]
    return []


def _is_retriever(span_type: str, name: str | None) -> bool:
    return span_type.upper() in ("RETRIEVER", "RETRIEVAL") or "retriev" in (name or "").lower()


def find_documents(trace: TraceRecord) -> list[Document]:
    """All retrieved documents of a trace, in retrieval order, without duplicates."""
    found: list[Document] = []
    for span in trace.spans:
        if _is_retriever(span.type, span.name):
            found += _documents_in(span.output)
    for value in (trace.output, trace.metadata, trace.input):
        found += _documents_in(value)
    unique, seen = [], set()
    for doc in found:
        key = doc.doc_id or doc.text
        if key not in seen:
            seen.add(key)
            unique.append(doc)
    return unique


class _Citations:
    """Turns citation markers in answer text into links to document anchors."""

    def __init__(self, docs: list[Document], prefix: str) -> None:
        self.docs = docs
        self.prefix = prefix
        self.cited: set[int] = set()
        self.by_key: dict[str, int] = {}
        for number, doc in enumerate(docs, start=1):
            for key in (doc.doc_id, doc.title):
                if key:
                    self.by_key.setdefault(key.strip().lower(), number)

    def _link(self, label: str, number: int | None, shown: str) -> str:
        if number is not None and 1 <= number <= len(self.docs):
            self.cited.add(number)
            doc = self.docs[number - 1]
            title = attr(doc.title or doc.source or doc.doc_id or f"document {number}")
            return (
                f'<a class="eb-cite" href="#{self.prefix}-doc-{number}" title="{title}">'
                f"{esc(shown, 200)}</a>"
            )
        return (
            f'<span class="eb-cite eb-cite-missing" title="no retrieved document {attr(label)}">'
            f"{esc(shown, 200)}</span>"
        )

    def _group(self, match: re.Match[str]) -> str | None:
        """HTML for one bracketed group, or None when it is not a citation (e.g. "[x]")."""
        if match.group(2):  # 【2†source】
            return self._link(match.group(2), int(match.group(2)), match.group())
        parts = [part.strip() for part in re.split(r"[,;]", match.group(1))]
        numbers = []
        for part in parts:
            number = _NUMBER_RE.fullmatch(part)
            if number:
                numbers.append((part, int(number.group(1))))
            elif part.lower() in self.by_key:
                numbers.append((part, self.by_key[part.lower()]))
            else:
                return None
        links = [self._link(part, number, part) for part, number in numbers]
        return "[" + ", ".join(links) + "]"

    def text_html(self, text: str) -> str | None:
        """Escaped `text` with citations linked, or None when it holds no citation."""
        pieces, last, changed = [], 0, False
        for match in _CITE_RE.finditer(text):
            replacement = self._group(match)
            if replacement is None:
                continue
            pieces.append(esc(text[last : match.start()]))
            pieces.append(replacement)
            last, changed = match.end(), True
        if not changed:
            return None
        pieces.append(esc(text[last:]))
        return "".join(pieces)


def _doc_html(number: int, doc: Document, prefix: str, cited: bool) -> str:
    head = f'<span class="eb-badge">[{number}]</span>'
    label = doc.title or doc.source or doc.doc_id
    if label:
        head += f"<bdi><b>{esc(label, 500)}</b></bdi>"
    if doc.source and doc.source.lower().startswith(("http://", "https://")):
        head += f' <a href="{attr(doc.source, 2_000)}">{esc(doc.source, 200)}</a>'
    elif doc.source and doc.source != label:
        head += f' <span class="eb-meta">{esc(doc.source, 500)}</span>'
    if doc.doc_id and doc.doc_id != label:
        head += f' <code class="eb-meta">{esc(doc.doc_id, 200)}</code>'
    if doc.score is not None:
        head += f' <span class="eb-meta">score {doc.score:.3g}</span>'
    head += (
        ' <span class="eb-badge">cited</span>'
        if cited
        else ' <span class="eb-badge eb-muted">not cited</span>'
    )
    if len(doc.text) <= _PREVIEW_CHARS:
        body = text_block(doc.text, DOC_TEXT_LIMIT)
    else:
        body = folded(esc(doc.text[:_PREVIEW_CHARS]) + "…", text_block(doc.text, DOC_TEXT_LIMIT))
    return (
        f'<div class="eb-doc" id="{prefix}-doc-{number}"><div class="eb-doc-head">{head}</div>'
        f"{body}</div>"
    )


def render_rag(trace: TraceRecord, **_: Any) -> str:
    """Question, answer (Markdown, citations linked) and the retrieved documents."""
    prefix = anchor_prefix(trace.source, trace.source_id)
    docs = find_documents(trace)
    citations = _Citations(docs[:MAX_DOCS], prefix)

    question = pick(trace.input, _QUESTION_KEYS) if isinstance(trace.input, Mapping) else None
    question = question if question is not None else trace.input
    if question is None:
        question = last_content(trace, "user")
    answer = output_text(trace, _ANSWER_KEYS)

    parts = [section("Question", text_block(question) if question is not None else "")]
    answer_html = (
        markdown_html(answer, citations.text_html)
        if isinstance(answer, str)
        else text_block(answer)
    )
    parts.append(section("Answer", answer_html or '<div class="eb-muted">(no answer)</div>'))
    if docs:
        listed = "".join(
            _doc_html(number, doc, prefix, number in citations.cited)
            for number, doc in enumerate(docs[:MAX_DOCS], start=1)
        )
        if len(docs) > MAX_DOCS:
            hidden = len(docs) - MAX_DOCS
            listed += f'<div class="eb-note">{hidden:,} more documents not shown.</div>'
        parts.append(section(f"Retrieved documents ({len(docs)})", listed))
    else:
        parts.append(section("Retrieved documents", '<div class="eb-muted">None found.</div>'))
    return page("".join(parts), "rag")


render_rag.label = "RAG answer with sources"  # type: ignore[attr-defined]

"""Long unbroken runs get break opportunities (<wbr>), so a browser lays them out quickly,
without changing the text, links or anything inside tags."""

from __future__ import annotations

import re

from evalboard.render.safe import esc, markdown_html


def visible(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup.replace("<wbr>", ""))


def test_long_runs_get_breaks_and_keep_their_text() -> None:
    word = "x" * 1000
    out = esc(word + " & more")
    assert out.count("<wbr>") >= 10 and visible(out) == word + " &amp; more"
    assert "<wbr>" not in esc("short words stay as they are")


def test_markdown_breaks_text_but_not_link_targets() -> None:
    url = "https://docs.example.com/" + "a" * 300
    out = markdown_html(f"see [the page]({url}) and {'y' * 400}")
    assert f'href="{url}"' in out  # the link target is whole
    assert "<wbr>" in out and "\ue000" not in out
    assert "y" * 400 in visible(out)

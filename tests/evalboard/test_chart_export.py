"""Charts download as SVG and PNG, rendered on the server without a browser or network."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest

from evalboard.axial.charts import chart_image


def test_chart_renders_to_svg_and_png() -> None:
    chart = alt.Chart(pd.DataFrame({"mode": ["a", "b"], "traces": [3, 5]})).mark_bar().encode(
        x="mode:N", y="traces:Q")
    svg = chart_image(chart, "svg")
    png = chart_image(chart, "png")
    assert svg is not None and svg.lstrip().startswith(b"<svg") and b"traces" in svg
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="svg' or 'png"):
        chart_image(chart, "gif")

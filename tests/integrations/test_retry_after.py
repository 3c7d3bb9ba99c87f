"""Retry-After readings shared by the LLM, Langfuse and target clients."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from integrations.retry_after import retry_after_seconds


@pytest.mark.parametrize(("headers", "want"), [
    ({"retry-after": "12"}, 12.0),
    ({"Retry-After": "3.5"}, 3.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # milliseconds win when both are given
    ({"retry-after": "-4"}, 0.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
    (None, None),
])
def test_readings(headers, want) -> None:
    assert retry_after_seconds(headers) == want


def test_http_date_and_httpx_headers() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_seconds(httpx.Headers({"Retry-After": later})) <= 31

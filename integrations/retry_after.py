"""How long a server asked us to wait: one reading of `Retry-After` for every outside system."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any


def retry_after_seconds(headers: Mapping[str, Any] | Any | None) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI-style) or `Retry-After` (delta-seconds or an HTTP
    date, RFC 9110); None when absent or unreadable. Header names are matched as given and in
    lower case, so plain dicts and httpx's case-insensitive headers both work."""
    if not headers:
        return None

    def header(name: str) -> Any:
        return headers.get(name) or headers.get(name.title())

    millis = header("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    raw = header("retry-after")
    if not raw:
        return None
    raw = str(raw).strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())

"""Credentials never reach a message: user:password@ in URLs and secret query values are masked."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|key|secret|auth|apikey|api_key|access_token)"
    r"=)[^&;#\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with URL credentials and secret query values replaced by ***.

    >>> redact("cannot open rtsp://admin:hunter2@10.0.0.5/live?token=abc")
    'cannot open rtsp://***@10.0.0.5/live?token=***'
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_QUERY.sub(r"\g<key>***", text)

"""Passwords out of everything ids logs or prints: URIs with `user:password@` or `password=`.

Every command's error line, every param, tag, artifact and model config goes through `redact`.
"""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^/\s]*@")
_SECRET_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|secret|access_token"
                           r"|api_key)=)[^&;#\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***: `user:password@` and
    password=... query parameters. For anything logged (params, tags, artifacts) or printed."""
    text = _USERINFO.sub(r"\g<head>:***@", str(text))
    return _SECRET_QUERY.sub(r"\g<head>***", text)


def redacted(obj: Any) -> Any:
    """A copy of a nested dict/list with `redact` applied to every string in it."""
    if isinstance(obj, dict):
        return {k: redacted(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redacted(v) for v in obj]
    return redact(obj) if isinstance(obj, str) else obj

"""5xx answers the fuzzers may see that are not the proxy crashing on bad input, each with its reason.

Kept narrow (route, status and the error's own words) so anything else at 5xx
still fails the fuzz. Each is an open issue in another part of the proxy,
listed so the fuzz keeps covering the rest of those routes until it is fixed,
and counted in the fuzz summary. (Fixed since the fuzz found them: an unknown
`hosts` entry in a pull answered 503, a model no registry has answered 500, and
a 400 from every host answered 500 with `stream: false`.) Empty today.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KNOWN", "known_5xx"]

#: (routes, status, words in the error, why)
KNOWN: list[tuple[tuple[str, ...], int, tuple[str, ...], str]] = []


def known_5xx(path: str, status: int, body: Any) -> str | None:
    """Why this 5xx is expected, or None when it is a bug the fuzz must report."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, str):
        return None
    for routes, code, words, why in KNOWN:
        if path in routes and status == code and all(w in error for w in words):
            return why
    return None

"""When a stream may be resumed: the proxy's switches and the request's own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from olol.cluster.backend import JSON

__all__ = ["RESUME_HEADER", "ResumeSettings", "resume_requested", "without_resume_option"]

#: Per-request switch for clients that cannot add an option (OpenAI clients): `X-OLOL-Resume: false`.
RESUME_HEADER = "X-OLOL-Resume"

_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class ResumeSettings:
    #: Continue a stream that broke after its first byte on another host (`--no-resume` turns it off).
    enabled: bool = True
    #: Continuations one request may take before its error line is the answer (`--max-resumes`).
    max_resumes: int = 2


def resume_requested(body: JSON, headers: Mapping[str, str]) -> bool:
    """False when the request says `"options": {"resume": false}` or `X-OLOL-Resume: false`."""
    header = headers.get(RESUME_HEADER)
    if header is not None and header.strip().lower() in _FALSE:
        return False
    options = body.get("options")
    return not (isinstance(options, dict) and options.get("resume") is False)


def without_resume_option(body: JSON) -> JSON:
    """The body hosts see: `options.resume` is the proxy's, not an engine option."""
    options = body.get("options")
    if not isinstance(options, dict) or "resume" not in options:
        return body
    return {**body, "options": {k: v for k, v in options.items() if k != "resume"}}

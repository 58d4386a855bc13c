"""Resuming a generation on another host after the first byte (issue 15).

A stream that breaks after its first chunk has already shown the client part of an
answer. The proxy has seen every chunk it relayed, so it asks the next best host to
continue from there (see `continuation`) and splices that host's chunks into the same
client stream (see `stream`), bounded by `ResumeSettings`.
"""

from olol.proxy.resume.continuation import Continuation, plan_continuation
from olol.proxy.resume.settings import RESUME_HEADER, ResumeSettings, resume_requested
from olol.proxy.resume.stream import ResumableStream
from olol.proxy.resume.transcript import Transcript

__all__ = [
    "RESUME_HEADER",
    "Continuation",
    "ResumableStream",
    "ResumeSettings",
    "Transcript",
    "plan_continuation",
    "resume_requested",
]

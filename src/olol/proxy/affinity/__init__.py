"""Session affinity: conversation keys and bounded-load consistent hashing."""

from olol.proxy.affinity.keys import SESSION_HEADER, SHORT_PROMPT, prefix_text, session_key
from olol.proxy.affinity.ring import HashRing, load_bound
from olol.proxy.affinity.sessions import DEFAULT_LOAD_FACTOR, SessionAffinity

__all__ = ["DEFAULT_LOAD_FACTOR", "SESSION_HEADER", "SHORT_PROMPT", "HashRing", "SessionAffinity", "load_bound",
           "prefix_text", "session_key"]

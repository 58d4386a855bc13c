"""HMAC signatures with keys derived from the cluster token.

Each use gets its own key (`derive_key(token, purpose)`), so a signature made for
one purpose (an mDNS advertisement) can never be replayed as another (a
registration, a scan proof). Messages are flat string maps, signed in a
canonical form (sorted keys, JSON-encoded), so the order of TXT records or JSON
keys on the wire does not matter and no field can be smuggled into another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping

__all__ = [
    "SIGNATURE_FIELD",
    "ReplayGuard",
    "derive_key",
    "new_nonce",
    "sign_fields",
    "verify_fields",
]

SIGNATURE_FIELD = "sig"


def derive_key(token: str, purpose: str) -> bytes:
    return hmac.new(token.encode(), f"olol/v1/{purpose}".encode(), hashlib.sha256).digest()


def _canonical(fields: Mapping[str, str]) -> bytes:
    body = {k: str(v) for k, v in fields.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_fields(token: str, purpose: str, fields: Mapping[str, str]) -> str:
    """Hex HMAC-SHA256 of `fields` (any `sig` field among them is left out)."""
    return hmac.new(derive_key(token, purpose), _canonical(fields), hashlib.sha256).hexdigest()


def verify_fields(token: str, purpose: str, fields: Mapping[str, str], signature: str | None = None) -> bool:
    """True when `signature` (default: `fields["sig"]`) is this token's signature of `fields`."""
    presented = signature if signature is not None else fields.get(SIGNATURE_FIELD, "")
    expected = sign_fields(token, purpose, fields)
    # compare_digest on equal-length ASCII: the time taken says nothing about how much matched.
    return hmac.compare_digest(str(presented).encode("ascii", "replace"), expected.encode())


def new_nonce() -> str:
    return secrets.token_hex(12)


class ReplayGuard:
    """Accepts a signed message once, and only while its timestamp is fresh.

    A captured registration replayed later is refused (too old), and replayed at
    once is refused too (nonce already seen). The nonce memory is bounded: an entry
    older than the window can be forgotten because its timestamp alone refuses it.
    """

    def __init__(self, window: float = 60.0, max_nonces: int = 100_000) -> None:
        self.window = window
        self.max_nonces = max_nonces
        self._seen: OrderedDict[str, float] = OrderedDict()

    def accept(self, timestamp: float, nonce: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if not nonce or abs(now - timestamp) > self.window:
            return False
        self._forget(now)
        if nonce in self._seen:
            return False
        self._seen[nonce] = timestamp
        return True

    def _forget(self, now: float) -> None:
        while self._seen:
            nonce, ts = next(iter(self._seen.items()))
            if now - ts <= self.window and len(self._seen) < self.max_nonces:
                break
            del self._seen[nonce]

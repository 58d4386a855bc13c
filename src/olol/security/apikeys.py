"""API keys for the proxy's HTTP API: `Authorization: Bearer KEY`, full or read-only.

Keys come as `KEY` (full access), `KEY:read` (status and metrics only) or
`KEY:admin` (full access, and every key's chat sessions, not only its own), from
repeated `--api-key` flags, `$OLOL_API_KEYS` (comma separated) or a file with
one key a line (`#` comments). Only SHA-256 digests are kept in memory, and a
presented key is compared with every stored digest, so neither the match
position nor an early exit shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ADMIN", "FULL", "READ", "ApiKey", "ApiKeys"]

FULL = "full"
READ = "read"
ADMIN = "admin"
_SCOPES = (FULL, READ, ADMIN)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class ApiKey:
    """A key the proxy accepted: `name` is safe to log (a digest prefix, never the key)."""

    name: str
    scope: str


@dataclass
class ApiKeys:
    _entries: list[tuple[bytes, ApiKey]] = field(default_factory=list)

    @classmethod
    def parse(cls, specs: Iterable[str] = (), file: str | Path | None = None) -> ApiKeys:
        keys = cls()
        lines = list(specs)
        if file:
            lines += Path(file).expanduser().read_text().splitlines()
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if line:
                keys.add(line)
        return keys

    def add(self, spec: str) -> None:
        secret, sep, scope = spec.rpartition(":")
        if not sep or scope not in _SCOPES:
            secret, scope = spec, FULL  # a key may itself contain ':' when it has no scope suffix
        if len(secret) < 16:
            raise ValueError("an API key must be at least 16 characters (try `olol certs token`)")
        digest = _digest(secret)
        self._entries.append((digest, ApiKey(digest.hex()[:8], scope)))

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, presented: str) -> ApiKey | None:
        digest = _digest(presented)
        found: ApiKey | None = None
        for stored, key in self._entries:  # no early exit
            if hmac.compare_digest(stored, digest):
                found = key
        return found

    def from_header(self, authorization: str | None) -> ApiKey | None:
        """The key in `Authorization: Bearer KEY` (what the Ollama and OpenAI clients send)."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return self.check(value.strip())

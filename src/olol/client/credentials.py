"""What a Python or CLI client presents to a secured cluster: an API key, the cluster token, TLS trust.

One object for every transport, so each client takes the same keywords:
* `api_key`: the proxy's HTTP API key, sent as `Authorization: Bearer KEY`
  (also accepted by the proxy's sessions gRPC port);
* `token`: the cluster token, for an agent's gRPC API (also accepted by the
  proxy's sessions gRPC port);
* `ca`: the CA that signed the server's certificate (HTTPS: added to what is
  trusted; gRPC: turns TLS on); `cert`/`key`: a client certificate, for
  servers that require one (mutual TLS, `--https-client-auth`);
* `verify=False`: HTTPS without checking the certificate (tests, a first
  look at a self-signed proxy); gRPC has no such mode.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from olol.security.tls import TlsFiles
from olol.security.tokens import token_metadata

__all__ = ["ClientCredentials"]


@dataclass(frozen=True)
class ClientCredentials:
    api_key: str | None = None
    token: str | None = None
    ca: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        TlsFiles(self.cert, self.key, self.ca).check()  # missing files fail here, not at the first call

    # ------------------------------------------------------------------ HTTP (a proxy, Ollama)
    def http_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def ssl_context(self) -> ssl.SSLContext | None:
        """For aiohttp (`ssl=`) and urllib (`context=`); None keeps the default checks."""
        if not self.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca or self.cert:
            ctx = ssl.create_default_context(cafile=str(Path(self.ca).expanduser()) if self.ca else None)
        else:
            return None
        if self.cert and self.key:
            ctx.load_cert_chain(str(Path(self.cert).expanduser()), str(Path(self.key).expanduser()))
        return ctx

    # ------------------------------------------------------------------ gRPC (agents, the sessions port)
    def tls(self) -> TlsFiles | None:
        """TLS files for a gRPC channel; None dials plaintext (no CA and no client certificate given)."""
        if not (self.ca or self.cert):
            return None
        if not self.verify:
            raise ValueError("verify=False is for HTTPS only: give gRPC the server's CA (ca=...)")
        return TlsFiles(self.cert, self.key, self.ca)

    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        """For the proxy's sessions port, which takes either: the API key if given, else the token."""
        return token_metadata(self.api_key or self.token)

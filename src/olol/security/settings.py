"""`SecuritySettings`: one process's token, TLS files, API keys and input limits, built once by the CLI.

Agents use `token` and `tls`; the proxy uses all of it. The defaults are
today's open behaviour (no token, plaintext, no keys); limits are on by default
because they only refuse what no well-behaved client sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from olol.security.apikeys import ApiKeys
from olol.security.cors import default_origins
from olol.security.limits import HttpLimits
from olol.security.tls import TlsFiles

__all__ = ["SecuritySettings"]


@dataclass
class SecuritySettings:
    #: Cluster token carried by (and required on) every gRPC call; None: auth off.
    token: str | None = None
    #: gRPC TLS (agents: serve; proxy: dial agents, and serve HTTPS with the same cert).
    tls: TlsFiles = field(default_factory=TlsFiles)
    #: Proxy only: serve HTTPS when `tls` has a certificate (set False to keep the HTTP API plain).
    https: bool = True
    #: Proxy only: HTTPS clients must present a certificate signed by `tls.ca`.
    https_client_auth: bool = False
    #: Proxy only: keys for the HTTP API; empty: no key needed.
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    #: Proxy only: body/header sizes, body timeout, rate limits, unknown-field policy.
    limits: HttpLimits = field(default_factory=HttpLimits)
    #: Proxy only: browser origins allowed by CORS, as Ollama's (`$OLLAMA_ORIGINS` plus its local defaults).
    origins: list[str] = field(default_factory=default_origins)

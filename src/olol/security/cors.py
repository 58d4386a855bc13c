"""CORS as Ollama answers it: which browser origins may call the API, and the preflight.

Ollama (server/routes.go) uses gin-contrib/cors with wildcards and browser
extensions allowed; its origins (envconfig.AllowedOrigins) are `OLLAMA_ORIGINS`
(comma separated) plus `http(s)://localhost`, `127.0.0.1` and `0.0.0.0` on any
port, and `app://`, `file://`, `tauri://`, `vscode-webview://`,
`vscode-file://`. A request from any other origin is refused with an empty 403,
so a web page the user happens to visit cannot drive the cluster; a request
without an `Origin` (every non-browser client) is no CORS request at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["CorsPolicy", "default_origins"]

_LOCAL = ("localhost", "127.0.0.1", "0.0.0.0")
_APPS = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
# gin-contrib/cors's AllowBrowserExtensions.
_EXTENSIONS = ("chrome-extension://", "safari-extension://", "moz-extension://", "ms-browser-extension://")
# What Ollama's preflight allows (gin-contrib's DefaultConfig methods, Ollama's header list).
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = ",".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
    # The OpenAI SDKs' headers, for /v1 from a browser.
    "OpenAI-Beta", "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval",
    "x-stainless-helper-method", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
    "x-stainless-poll-helper", "x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version",
    "x-stainless-timeout",
))  # fmt: skip
MAX_AGE = str(12 * 3600)  # gin-contrib's default


def default_origins(environ: Mapping[str, str] | None = None) -> list[str]:
    """`OLLAMA_ORIGINS` first, then Ollama's built-in list, as `envconfig.AllowedOrigins` builds it."""
    env = os.environ if environ is None else environ
    origins = [o.strip() for o in env.get("OLLAMA_ORIGINS", "").split(",") if o.strip()]
    for host in _LOCAL:
        origins += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    return origins + list(_APPS)


@dataclass(frozen=True)
class CorsPolicy:
    """Exact origins, `prefix*suffix` patterns, or `*` for any origin."""

    exact: frozenset[str]
    patterns: tuple[tuple[str, str], ...]
    any_origin: bool

    @classmethod
    def of(cls, origins: Iterable[str]) -> CorsPolicy:
        exact: set[str] = set()
        patterns: list[tuple[str, str]] = []
        any_origin = False
        for origin in origins:
            if origin == "*":
                any_origin = True
            elif "*" in origin:
                prefix, _, suffix = origin.partition("*")
                patterns.append((prefix, suffix))
            else:
                exact.add(origin)
        return cls(frozenset(exact), tuple(patterns), any_origin)

    def allows(self, origin: str) -> bool:
        if self.any_origin or origin in self.exact or origin.startswith(_EXTENSIONS):
            return True
        return any(
            len(origin) >= len(p) + len(s) and origin.startswith(p) and origin.endswith(s) for p, s in self.patterns
        )

    def allow_origin(self, origin: str) -> str:
        """The `Access-Control-Allow-Origin` value for an allowed origin."""
        return "*" if self.any_origin else origin

    def preflight_headers(self, origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": self.allow_origin(origin),
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        }

"""`--hide-hosts`: host addresses kept out of what clients see in errors and `X-OLOL-*` headers.

A proxy in front of a shared cluster should not tell every client the internal
addresses of its hosts (`cannot reach Ollama at http://10.0.0.7:11434`). With
hiding on, each host is named by its place in the cluster instead (`host-2`):
stable for the proxy's life, so an operator can still match a client's report
to `olol status`, which shows both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["HostHider"]

_HEADER_PREFIX = "X-OLOL-"


class HostHider:
    def __init__(self, host_ids: Callable[[], Iterable[str]]) -> None:
        self._host_ids = host_ids  # read at each use: hosts discovered later are hidden too
        self._aliases: dict[str, str] = {}

    def alias(self, host_id: str) -> str:
        if host_id not in self._aliases:
            self._aliases[host_id] = f"host-{len(self._aliases) + 1}"
        return self._aliases[host_id]

    def _forms(self) -> list[tuple[str, str]]:
        """Each host's spellings (its id, and `host:port` of a URL id), longest first, with its alias."""
        forms: list[tuple[str, str]] = []
        for host_id in self._host_ids():
            alias = self.alias(host_id)
            forms.append((host_id, alias))
            netloc = urlsplit(host_id).netloc if "://" in host_id else ""
            if netloc:
                forms.append((netloc, alias))
        return sorted(forms, key=lambda form: len(form[0]), reverse=True)

    def text(self, text: str) -> str:
        for form, alias in self._forms():
            if form in text:
                text = text.replace(form, alias)
        return text

    def json(self, obj: Any) -> Any:
        """A JSON value with every string (keys too) hidden."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, list):
            return [self.json(x) for x in obj]
        if isinstance(obj, dict):
            return {self.text(k): self.json(v) for k, v in obj.items()}
        return obj

    def headers_hook(self) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
        """An `on_response_prepare` hook that hides hosts in every `X-OLOL-*` header."""

        async def hide(_request: web.Request, response: web.StreamResponse) -> None:
            for name in [n for n in response.headers if n.upper().startswith(_HEADER_PREFIX)]:
                response.headers[name] = self.text(response.headers[name])

        return hide

"""`olol proxy`: a drop-in Ollama endpoint over many hosts.

Public API:
* `ProxyConfig`: every setting, documented field by field;
* `serve(config)`: run until SIGTERM/SIGINT (the CLI's entry point);
* `start_proxy(config) -> RunningProxy` (`.url`, `.port`, `await .stop()`): for tests and embedding;
* `make_backend(spec)`: the one place a `--servers` entry becomes a backend;
* `POLICIES`: the names `--balancer` accepts.
"""

from typing import TYPE_CHECKING, Any

from olol.proxy.config import DEFAULT_PORT, ProxyConfig
from olol.proxy.policies import DEFAULT_POLICY, POLICIES

if TYPE_CHECKING:
    from olol.backends.factory import make_backend
    from olol.proxy.server import RunningProxy, serve, start_proxy

__all__ = ["DEFAULT_POLICY", "DEFAULT_PORT", "POLICIES", "ProxyConfig", "RunningProxy", "make_backend", "serve",
           "start_proxy"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the CLI reads ProxyConfig's settings for every `olol` command, and the server
    # brings aiohttp's app and grpc with it (import cost, not a cycle).
    if name in ("RunningProxy", "serve", "start_proxy"):
        from olol.proxy import server

        return getattr(server, name)
    if name == "make_backend":
        from olol.backends.factory import make_backend

        return make_backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

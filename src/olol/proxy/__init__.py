"""`olol proxy`: a drop-in Ollama endpoint over many hosts.

Public API:
* `ProxyConfig`: every setting, documented field by field;
* `serve(config)`: run until SIGTERM/SIGINT (the CLI's entry point);
* `start_proxy(config) -> RunningProxy` (`.url`, `.port`, `await .stop()`): for tests and embedding;
* `make_backend(spec)`: the one place a `--servers` entry becomes a backend;
* `POLICIES`: the names `--balancer` accepts.
"""

from olol.backends.factory import make_backend
from olol.proxy.config import DEFAULT_PORT, ProxyConfig
from olol.proxy.policies import DEFAULT_POLICY, POLICIES
from olol.proxy.server import RunningProxy, serve, start_proxy

__all__ = ["DEFAULT_POLICY", "DEFAULT_PORT", "POLICIES", "ProxyConfig", "RunningProxy", "make_backend", "serve",
           "start_proxy"]

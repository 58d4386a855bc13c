"""`olol server`: the agent that serves one host's backend over gRPC.

AgentCore is imported on first use: `olol server --help` reads AgentConfig's settings (olol.cli
builds the options from them) and must not import the agent itself, nor grpc through it
(tests/packaging/test_startup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from olol.agent.config import AgentConfig

if TYPE_CHECKING:
    from olol.agent.core import AgentCore

__all__ = ["AgentConfig", "AgentCore"]


def __getattr__(name: str) -> Any:
    if name == "AgentCore":
        from olol.agent.core import AgentCore

        return AgentCore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

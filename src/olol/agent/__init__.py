"""`olol server`: the agent that serves one host's backend over gRPC."""

from olol.agent.config import AgentConfig
from olol.agent.core import AgentCore

__all__ = ["AgentConfig", "AgentCore"]

"""Shared fixtures live in tests/support/; this file only registers them."""

pytest_plugins = [
    "tests.support.sim_fixtures",
    "tests.support.llama_fixtures",
    "tests.support.agent_fixtures",
]

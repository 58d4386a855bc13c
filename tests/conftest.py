"""Shared fixtures live in tests/support/; this file registers them and keeps tests off $HOME."""

from __future__ import annotations

import os
import tempfile

pytest_plugins = [
    "tests.support.sim_fixtures",
    "tests.support.llama_fixtures",
    "tests.support.agent_fixtures",
]

# Proxies started by tests (also as subprocesses, which inherit this) keep their session
# database in a throwaway state dir, never in the developer's ~/.local/state.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="olol-test-state-")

"""`python -m tests.support.ollama_sim`: see `_cli`."""

from __future__ import annotations

import sys

from tests.support.ollama_sim._cli import main

sys.exit(main())

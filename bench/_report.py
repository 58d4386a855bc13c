"""Shared by every benchmark: medians, and writing one section of BENCHMARKS.md.

Each benchmark owns the block between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` and rewrites only that block, so benchmarks run in any
order and never clobber each other's figures.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "BENCHMARKS.md"
PLOTS = ROOT / "bench" / "plots"
HEADER = (
    "# OLOL benchmarks\n\n"
    "Every figure here is written by a script under `bench/` that runs OLOL and its\n"
    "baseline side by side in one run; numbers are medians of several runs on the\n"
    "machine named in each section. Re-run a section with the command it names.\n"
)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md."""
    text = REPORT.read_text() if REPORT.exists() else HEADER
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

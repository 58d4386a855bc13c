"""Start-up of the pip entry point: what `olol version` and `--help` cost, and what they import.

    python -m bench.bench_startup                          # this tree
    python -m bench.bench_startup --baseline OLD/src       # ... side by side with another tree's sources

Runs the `olol` console script of this Python (pip install -e .) with PYTHONPATH set to each
tree's `src`, interleaved, and reports medians of wall time (exec to exit) and of the import
time `python -X importtime -m olol version` reports, and which heavy modules it imports.
Needs no build: the one-file binary's figures are bench_packaging's.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench._report import median, table, write_section

ROOT = Path(__file__).resolve().parents[1]
RUNS = 10
COMMANDS = (("version",), ("--help",), ("proxy", "--help"))
HEAVY = ("typer", "pydantic", "rich", "grpc", "google.protobuf", "aiohttp", "numpy")


def entry_point() -> str:
    script = Path(sys.executable).parent / "olol"
    if not script.is_file():
        raise SystemExit("no pip-installed `olol` entry point next to this Python: pip install -e .")
    return str(script)


def env_for(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def import_report(env: dict[str, str]) -> tuple[float, set[str]]:
    """(seconds of imports -X importtime counts for `olol version`, top-level modules imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "olol", "version"], env=env, check=True, capture_output=True,
        text=True,
    )
    total, names = 0, set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        names.add(name.strip())
        if not name.startswith("  "):  # a top-level import: its cumulative time holds its children's
            total += int(cumulative)
    return total / 1e6, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another tree's src/ to compare with (e.g. main's)")
    parser.add_argument("--label", default="baseline", help="what to call the baseline in the table")
    args = parser.parse_args()
    olol = entry_point()
    trees = {"this tree": ROOT / "src"}
    if args.baseline:
        trees = {args.label: args.baseline.resolve(), **trees}
    walls: dict[tuple[str, tuple[str, ...]], list[float]] = {(t, c): [] for t in trees for c in COMMANDS}
    imports: dict[str, list[float]] = {t: [] for t in trees}
    modules: dict[str, set[str]] = {}
    for src in trees.values():  # warm-up: page cache and .pyc files, outside the figures
        for command in COMMANDS:
            wall([olol, *command], env_for(src))
    for _ in range(RUNS):
        for tree, src in trees.items():
            for command in COMMANDS:
                walls[(tree, command)].append(wall([olol, *command], env_for(src)))
            seconds, modules[tree] = import_report(env_for(src))
            imports[tree].append(seconds)

    rows = []
    for tree in trees:
        heavy = sorted(h for h in HEAVY if h in modules[tree])
        rows.append(
            (
                tree,
                *(f"{median(walls[(tree, c)]):.3f} s" for c in COMMANDS),
                f"{median(imports[tree]) * 1000:.0f} ms",
                len(modules[tree]),
                ", ".join(heavy) or "none of them",
            )
        )
    with open("/proc/cpuinfo") as fh:
        model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    md = "\n\n".join(
        [
            "## Start-up of the pip entry point",
            f"`python -m bench.bench_startup{' --baseline ' + str(args.baseline) if args.baseline else ''}`. "
            f"Medians of {RUNS} interleaved runs of the `olol` console script, exec to exit. {model}, "
            f"{psutil.cpu_count()} cores, Python {platform.python_version()}, load average {load} "
            "(other jobs on the box: compare rows with each other, not with other sections).",
            table(
                [
                    "sources",
                    "`olol version`",
                    "`olol --help`",
                    "`olol proxy --help`",
                    "imports of `olol version` (-X importtime)",
                    "modules imported",
                    f"of {', '.join(HEAVY)}",
                ],
                rows,
            ),
            "`olol version` runs without typer (importing it and coercing options through pydantic was most of "
            "a start) and `olol MODE` imports only that mode's command module; no `--help` imports grpc, "
            "protobuf, aiohttp or numpy (tests/packaging/test_startup.py). In a source checkout `olol version` "
            "also runs `git rev-parse` (a built executable carries its revision).",
        ]
    )
    write_section("startup", md)
    print(md)


if __name__ == "__main__":
    main()

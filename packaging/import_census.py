"""Which parts of OLOL's dependencies a run can import, and which it never does: where the binary's bytes go.

    python packaging/import_census.py            # a table of never-imported subpackages, largest first
    python packaging/import_census.py --json     # the same, machine-readable

The binary carries every module Nuitka finds by following imports from OLOL (imports inside
functions included), so lazily referenced parts of libraries (numpy.random, gguf's download
helpers, rich's syntax highlighting) go in although no mode ever runs them. This imports, in a
fresh interpreter, every module of OLOL plus every third-party module named by an import
statement anywhere in its sources (the lazy ones too), then runs every command's --help and
option parsing (what typer imports lazily): an upper bound of what any mode imports.
It then walks the installed distributions OLOL depends on (recursively, by their metadata)
and lists the subpackages nothing imported, with their size on disk. Those are the candidates
for `--nofollow-import-to` in packaging/build-binary; its report (build/packaging/nuitka/
report.xml) says which of them a build really carried.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "olol"


def imported_names() -> set[str]:
    """Top-level-or-dotted module names OLOL's sources import anywhere (module level or in functions)."""
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        if "_proto_build" in path.name:  # a build tool, left out of the binary
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return {n for n in names if not n.startswith("olol")}


def modules_imported_by_everything() -> set[str]:
    """sys.modules after importing every OLOL module and every module its sources name."""
    olol_modules = sorted(
        "olol." + ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in SRC.rglob("*.py")
        if "_proto_build" not in p.name and p.name != "__main__.py"
    )
    script = (
        "import importlib, sys, json\n"
        f"for name in {sorted(imported_names()) + olol_modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name.rstrip('.'))\n"
        "    except Exception:\n"  # optional dependencies that are absent, platform-only modules
        "        pass\n"
        # What libraries import lazily when the commands run: typer coerces options through pydantic,
        # and prints help (with rich).
        "from olol.cli import MODULE_OF, main\n"
        "for args in [[c, '--help'] for c in MODULE_OF] + [['server', '--config', '/nonexistent.toml']]:\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT, timeout=600,
        stdin=subprocess.DEVNULL,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def dependency_closure(name: str = "olol") -> set[str]:
    """Distribution names OLOL needs at run time: its requirements, theirs, ... (no extras)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        dist = todo.pop()
        key = re.sub(r"[-_.]+", "-", dist).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            marker = req.split(";", 1)[1] if ";" in req else ""
            if "win32" in marker and "!=" not in marker:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return seen - {"olol"}


def package_dirs(dist_name: str) -> list[Path]:
    """The import packages (folders with __init__.py) a distribution installs, top level first."""
    dist = metadata.distribution(dist_name)
    out: set[Path] = set()
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.name == "__init__.py" and "-info" not in str(file):
            out.add(path.parent)
    return sorted(out, key=lambda p: (len(p.parts), str(p)))


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def census() -> list[dict[str, object]]:
    loaded = modules_imported_by_everything()
    rows: list[dict[str, object]] = []
    for dist in sorted(dependency_closure()):
        try:
            dirs = package_dirs(dist)
        except metadata.PackageNotFoundError:
            continue
        reported: list[Path] = []
        for folder in dirs:
            if any(parent in reported for parent in folder.parents):
                continue  # inside a subpackage already reported as never imported
            site = next(p for p in folder.parents if p.name in ("site-packages", "dist-packages"))
            module = ".".join(folder.relative_to(site).parts)
            if module in loaded or any(m.startswith(module + ".") for m in loaded):
                # An imported package: its modules that nothing imported (e.g. pygments' lexers).
                idle = [
                    f
                    for f in folder.iterdir()
                    if f.is_file()
                    and f.suffix in (".py", ".so")
                    and f.name != "__init__.py"
                    and f"{module}.{f.name.split('.')[0]}" not in loaded
                ]
                idle_bytes = sum(f.stat().st_size for f in idle)
                if idle_bytes >= 100_000:
                    rows.append(
                        {"distribution": dist, "package": f"{module}.* ({len(idle)} modules)", "bytes": idle_bytes}
                    )
                continue
            reported.append(folder)
            rows.append({"distribution": dist, "package": module, "bytes": size(folder)})
    return sorted(rows, key=lambda r: -int(str(r["bytes"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = census()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    total = sum(int(str(r["bytes"])) for r in rows)
    print(f"never imported by any OLOL mode: {len(rows)} packages, {total / (1 << 20):.1f} MiB on disk")
    print("| package | distribution | on disk |\n|---|---|---|")
    for row in rows:
        print(f"| {row['package']} | {row['distribution']} | {int(str(row['bytes'])) / (1 << 20):.2f} MiB |")


if __name__ == "__main__":
    main()

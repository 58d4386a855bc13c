"""The one-file binary against the pip-installed entry point, side by side in one run.

    python -m bench.bench_packaging        # needs dist/olol: packaging/build-binary

Figures (medians), written to the `packaging` section of BENCHMARKS.md:
- size of dist/olol and of the payload it unpacks;
- `olol version`: cold start (empty cache: the payload is unpacked first), warm start
  (payload already unpacked), the standalone folder dist/olol.dist (what the packages
  install), and the pip-installed `olol` for comparison;
- time from exec to the first HTTP answer of `olol proxy` (GET /api/version), binary
  vs pip entry point, runs interleaved so both see the same machine state;
- resident memory of the idle proxy (the binary counts its launcher process too).
"""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench._report import median, table, write_section

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "dist" / "olol"
STANDALONE = ROOT / "dist" / "olol.dist" / "olol.bin"
COLD_RUNS, WARM_RUNS, PROXY_RUNS = 5, 9, 7


def pip_entry_point() -> Path:
    """The `olol` console script of the Python running this benchmark (pip install -e . / pip install .)."""
    script = Path(sys.executable).parent / "olol"
    found = script if script.is_file() else Path(shutil.which("olol") or "")
    if not found.is_file() or found.resolve() == BINARY.resolve():
        raise SystemExit("no pip-installed `olol` entry point next to this Python: pip install -e .")
    return found


def buildinfo() -> dict[str, str]:
    path = BINARY.with_name("olol.buildinfo")
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.is_file() else {}


def env_with_cache(cache: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(cache.parent), "XDG_CACHE_HOME": str(cache), "LANG": "C.UTF-8"}


def run_once(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def program_rss(pid: int) -> tuple[int, int]:
    """(resident memory of the program, of the onefile launcher in front of it; 0 without one)."""
    proc = psutil.Process(pid)
    children = proc.children(recursive=True)
    if not children:
        return proc.memory_info().rss, 0
    return sum(c.memory_info().rss for c in children), proc.memory_info().rss


def proxy_ready(cmd: Sequence[str], env: dict[str, str] | None) -> tuple[float, tuple[int, int]]:
    """Seconds from exec to the first answer of GET /api/version, and the idle proxy's memory."""
    port, dead = free_port(), free_port()
    full = [*cmd, "proxy", "--host", "127.0.0.1", "--port", str(port), "--servers", f"127.0.0.1:{dead}"]
    start = time.perf_counter()
    proc = subprocess.Popen(full, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"{' '.join(full)} exited {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=1) as response:
                    response.read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
        elapsed = time.perf_counter() - start
        time.sleep(0.5)
        return elapsed, program_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    if not BINARY.is_file():
        raise SystemExit("dist/olol is missing: run packaging/build-binary")
    pip_olol = str(pip_entry_point())
    info = buildinfo()
    work = Path(tempfile.mkdtemp(prefix="olol-bench-"))
    try:
        cold = []
        for i in range(COLD_RUNS):
            cold.append(run_once([str(BINARY), "version"], env_with_cache(work / f"cold{i}" / ".cache")))
        warm_cache = work / "cold0" / ".cache"
        payload = sum(p.stat().st_size for p in warm_cache.rglob("*") if p.is_file())
        warm_env = env_with_cache(warm_cache)
        warm = [run_once([str(BINARY), "version"], warm_env) for _ in range(WARM_RUNS)]
        pip = [run_once([pip_olol, "version"]) for _ in range(WARM_RUNS)]
        # The unpacked program alone, without the launcher: what the launcher's pass over the payload costs.
        program = warm_cache / "olol" / f"{info['VERSION']}-{info['BUILD_ID']}" / "olol.bin"
        direct = [run_once([str(program), "version"], warm_env) for _ in range(WARM_RUNS)]
        installed = [run_once([str(STANDALONE), "version"], warm_env) for _ in range(WARM_RUNS)]

        binary_ready: list[float] = []
        pip_ready: list[float] = []
        binary_rss: list[int] = []
        launcher_rss: list[int] = []
        pip_rss: list[int] = []
        proxy_ready([str(BINARY)], warm_env)  # warm-up of both, outside the figures
        proxy_ready([pip_olol], None)
        for _ in range(PROXY_RUNS):
            seconds, (rss, launcher) = proxy_ready([str(BINARY)], warm_env)
            binary_ready.append(seconds)
            binary_rss.append(rss)
            launcher_rss.append(launcher)
            seconds, (rss, _) = proxy_ready([pip_olol], None)
            pip_ready.append(seconds)
            pip_rss.append(rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    size = BINARY.stat().st_size
    mib = 1 << 20

    def vs_pip(binary: float, pip: float, unit: str) -> tuple[str, str, str]:
        scale, fmt = (1, "{:.2f} s") if unit == "s" else (mib, "{:.0f} MiB")
        return fmt.format(binary / scale), fmt.format(pip / scale), f"{binary / pip:.2f}x"

    rows = [
        ("size of dist/olol", f"{size / mib:.1f} MiB", "", ""),
        ("payload unpacked on first start", f"{payload / mib:.1f} MiB", "", ""),
        ("`olol version`, cold (empty cache: unpack + run)", f"{median(cold):.2f} s", "", ""),
        ("`olol version`, warm", *vs_pip(median(warm), median(pip), "s")),
        ("`olol version`, unpacked program run directly", *vs_pip(median(direct), median(pip), "s")),
        ("`olol version`, dist/olol.dist (as the packages install it)", *vs_pip(median(installed), median(pip), "s")),
        ("`olol proxy`: exec to first HTTP answer", *vs_pip(median(binary_ready), median(pip_ready), "s")),
        ("`olol proxy`: idle resident memory, program", *vs_pip(median(binary_rss), median(pip_rss), "MiB")),
        ("`olol proxy`: idle resident memory, launcher", f"{median(launcher_rss) / mib:.0f} MiB", "", ""),
    ]
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as fh:
        model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    build_minutes = int(info.get("BUILD_SECONDS", "0")) / 60
    md = "\n\n".join(
        [
            "## One-file binary vs pip-installed entry point",
            f"`python -m bench.bench_packaging` (after `packaging/build-binary`). Medians: {COLD_RUNS} cold runs, "
            f"{WARM_RUNS} warm runs, {PROXY_RUNS} interleaved proxy starts each. {model}, "
            f"{psutil.cpu_count()} cores, Python {platform.python_version()}, Nuitka {info.get('NUITKA_VERSION', '?')} "
            f"(build {info.get('BUILD_ID', '?')}, git {info.get('GIT_REVISION', '?')}; this build took "
            f"{build_minutes:.0f} min with a warm compiler cache, a first build 30-95 min on 2 shared cores; "
            f"needs glibc >= {info.get('GLIBC_MIN', '?')}).",
            table(["measure", "binary", "pip entry point", "binary / pip"], rows),
            "Cold means the payload is not yet unpacked (first start of a build on a host; the OS file cache "
            "may still hold the binary). Warm starts reuse `$XDG_CACHE_HOME/olol/<version>-<build id>`, but "
            "the launcher still walks the payload and checksums (CRC32) every unpacked file on each start "
            "(builds before --onefile-as-archive also decompressed the whole payload): that is the difference "
            "between the warm row and the next one (the compiled program started directly from the cache "
            "folder). The .deb, .rpm and Arch packages install the standalone folder: no launcher. "
            "The proxy runs with one unreachable host, so ready "
            "means listening and answering, not routing. The launcher's memory is mostly pages of the "
            "executable file it maps (page cache, reclaimable).",
        ]
    )
    write_section("packaging", md)
    print(md)


if __name__ == "__main__":
    main()

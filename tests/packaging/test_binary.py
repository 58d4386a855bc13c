"""The built one-file executable (dist/olol), run alone: no Python, no venv, nothing on PATH.

What a person gets who copies the one file to a fresh host: every mode answers, the
compiled hot paths are inside, the payload unpacks once per build, and a real
cluster (agent + llama.cpp + proxy, all started from the binary) answers a chat.
The standalone folder of the same build (dist/olol.dist, what the packages install)
runs alone too, and both meet issue 17's start-up and size targets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psutil
import pytest

from bench.bench_packaging import proxy_ready
from olol.backends.llamacpp.bins import LlamaBinaries
from tests.packaging._support import (
    DIST_BINARY,
    DIST_STANDALONE,
    NOT_BUILT,
    ROOT,
    project_version,
    read_buildinfo,
    run,
)

pytestmark = pytest.mark.packaging

CLI_MODES = ("server", "proxy", "rpc-server", "dist", "client", "version")
REPORT = ROOT / "build/packaging/nuitka/report.xml"  # written by packaging/build-binary
# Issue 17's targets for the one-file binary (medians; BENCHMARKS.md, packaging section).
MAX_SIZE_MIB = 45.0
MAX_WARM_VERSION_S = 0.3
MAX_COLD_VERSION_S = 2.0
MAX_PROXY_READY_S = 0.8


@pytest.fixture(scope="module")
def binary() -> Path:
    if not DIST_BINARY.is_file():
        pytest.fail(NOT_BUILT)
    return DIST_BINARY


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Nothing on PATH, a home and a cache of its own: no Python environment can leak in."""
    home = tmp_path_factory.mktemp("home")
    empty = tmp_path_factory.mktemp("empty-path")
    return {"PATH": str(empty), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "LANG": "C.UTF-8"}


def olol(binary: Path, env: dict[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return run([binary, *args], env=env, cwd=Path(env["HOME"]), timeout=timeout)


def test_version_reports_build_and_compiled_extensions(binary: Path, bare_env: dict[str, str]) -> None:
    info = read_buildinfo()
    lines = olol(binary, bare_env, "version").stdout.splitlines()
    assert lines[0].startswith(f"olol {project_version()} (git {info['GIT_REVISION']}, protocol ")
    assert lines[0].endswith(f", build {info['BUILD_ID']})")
    # The revision comes from the build's own _build_info module: there is no git (nor checkout) here.
    from olol._fast import NAMES

    assert lines[1] == "fast extensions: " + ", ".join(f"{name}=compiled" for name in sorted(NAMES))


@pytest.mark.parametrize("mode", CLI_MODES)
def test_every_mode_runs_from_the_binary(binary: Path, bare_env: dict[str, str], mode: str) -> None:
    out = olol(binary, bare_env, mode, "--help").stdout
    assert f"Usage: olol {mode} [OPTIONS]" in out
    assert olol(binary, bare_env, "--mode", mode, "--help").stdout == out


def test_payload_unpacks_once_per_build(binary: Path, bare_env: dict[str, str], tmp_path: Path) -> None:
    env = {**bare_env, "XDG_CACHE_HOME": str(tmp_path)}
    info = read_buildinfo()
    olol(binary, env, "version")
    unpacked = tmp_path / "olol" / f"{info['VERSION']}-{info['BUILD_ID']}"
    files = [p for p in unpacked.rglob("*") if p.is_file()]
    assert len(files) > 50, f"nothing unpacked into {unpacked}"
    before = {p: p.stat().st_mtime_ns for p in files}
    olol(binary, env, "version")
    assert {p: p.stat().st_mtime_ns for p in files} == before, "a warm start rewrote the payload"
    assert sorted(p.name for p in (tmp_path / "olol").iterdir()) == [unpacked.name]


def test_build_carries_what_the_modes_need_and_no_build_tools() -> None:
    """From Nuitka's report of the build that made dist/olol: every mode and its dependencies are in,
    and the tools that libraries only reference lazily (mypy, protoc, numpy's build tools) are out."""
    report = REPORT if REPORT.is_file() else None
    if report is None:
        pytest.fail(f"no {REPORT}: {NOT_BUILT}")
    root = ElementTree.parse(report).getroot()
    options = [o.get("value", "") for o in root.iter("option")]
    assert any(o.endswith(f"/olol/{read_buildinfo()['VERSION']}-{read_buildinfo()['BUILD_ID']}") for o in options), (
        "the report is from another build than dist/olol"
    )
    modules = {m.get("name", "") for m in root.iter("module")}
    needed = {
        "olol.cli",
        "olol.agent.server",
        "olol.proxy.server",
        "olol.backends.agent",
        "olol._proto.olol_pb2",
        "olol._proto.olol_pb2_grpc",
        "olol._fast.quant_c",
        "olol._fast.framing_c",
        "olol._fast.binpack_c",
        "grpc",
        "grpc.aio",
        "google.protobuf",
        "aiohttp",
        "aiohttp.web",
        "numpy",
        "numpy.random",  # olol.backends.llamacpp.tiny_model (the demo's model)
        "gguf",
        "psutil",
    }
    assert needed <= modules, f"missing from the binary: {sorted(needed - modules)}"
    unwanted = (
        "mypy",
        "pydantic.mypy",
        "grpc_tools",
        "numpy.distutils",
        "numpy.f2py",
        "olol._proto_build",
        # bundled by Nuitka's package configs, never imported by a mode (packaging/import_census.py)
        "numpy.fft",
        "numpy.polynomial",
        "numpy.ma",
        "numpy._core._simd",
        "pygments.lexers.python",
        "pygments.styles.monokai",
        "requests",
        "urllib3",
        "tqdm",
        "pydantic.v1",
    )
    bloat = sorted(m for m in modules if any(m == u or m.startswith(u + ".") for u in unwanted))
    assert not bloat, f"build tools in the binary: {bloat[:10]}"
    # Every olol module comes from the build's snapshot of the tree, none from a checkout or an install.
    outside = sorted(
        m.get("name", "")
        for m in root.iter("module")
        if m.get("name", "").startswith("olol") and "/build/packaging/stage/src/" not in m.get("source_path", "")
    )
    assert not outside, f"olol modules compiled from outside the staged snapshot: {outside}"


def test_standalone_folder_is_the_same_build_and_unpacks_nothing(binary: Path, bare_env: dict[str, str]) -> None:
    """dist/olol.dist/olol.bin (what the packages install) runs alone, reports the one file's build, writes no cache."""
    program = DIST_STANDALONE / "olol.bin"
    if not program.is_file():
        pytest.fail(NOT_BUILT)
    cache = Path(bare_env["XDG_CACHE_HOME"]) / "standalone"
    env = {**bare_env, "XDG_CACHE_HOME": str(cache)}
    assert olol(program, env, "version").stdout == olol(binary, bare_env, "version").stdout
    for mode in CLI_MODES:
        assert f"Usage: olol {mode} [OPTIONS]" in olol(program, env, mode, "--help").stdout
    assert not cache.exists() or not any(cache.rglob("*")), "the standalone program unpacked something"


def test_size_target(binary: Path) -> None:
    size_mib = binary.stat().st_size / (1 << 20)
    assert size_mib <= MAX_SIZE_MIB, f"dist/olol is {size_mib:.1f} MiB (target <= {MAX_SIZE_MIB} MiB)"


def _seconds(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=env["HOME"], check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def test_start_targets(binary: Path, bare_env: dict[str, str], tmp_path: Path) -> None:
    """Cold (empty cache) and warm `olol version`, and exec to the proxy's first answer: medians against
    issue 17's targets. The figures for BENCHMARKS.md come from `python -m bench.bench_packaging`."""
    cold = [
        _seconds([str(binary), "version"], {**bare_env, "XDG_CACHE_HOME": str(tmp_path / f"cold{i}")})
        for i in range(3)
    ]
    warm_env = {**bare_env, "XDG_CACHE_HOME": str(tmp_path / "cold0")}
    warm = [_seconds([str(binary), "version"], warm_env) for _ in range(7)]
    proxy_ready([str(binary)], warm_env)  # warm-up, outside the figures
    ready = [proxy_ready([str(binary)], warm_env)[0] for _ in range(5)]
    figures = {
        "cold version": (statistics.median(cold), MAX_COLD_VERSION_S),
        "warm version": (statistics.median(warm), MAX_WARM_VERSION_S),
        "proxy ready": (statistics.median(ready), MAX_PROXY_READY_S),
    }
    missed = {name: f"{got:.2f} s > {limit} s" for name, (got, limit) in figures.items() if got > limit}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    assert not missed, f"start-up targets missed: {missed} (load average {load})"


# --- a real cluster from the binary ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Any, proc: subprocess.Popen[str], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: exited {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{what} not ready after {timeout} s (last error: {last})")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Started:
    """Processes started from the binary; stop() sends SIGTERM the way systemd does."""

    def __init__(self, binary: Path, env: dict[str, str]) -> None:
        self.binary, self.env, self.procs = binary, env, list[subprocess.Popen[str]]()

    def __call__(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(self.binary), *args],
            env=self.env,
            cwd=self.env["HOME"],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], timeout: float = 40.0) -> tuple[int, str]:
        tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=timeout)
        leftover = [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        assert not leftover, f"processes left behind after SIGTERM: {leftover}"
        return proc.returncode, out

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def started(binary: Path, bare_env: dict[str, str]) -> Iterator[Started]:
    procs = Started(binary, bare_env)
    try:
        yield procs
    finally:
        procs.kill_all()


def test_smoke_cluster_answers_a_chat(
    started: Started, binary: Path, bare_env: dict[str, str], llama_bins: LlamaBinaries, tiny_model: Path
) -> None:
    """olol server (llama.cpp backend, real llama-server) + olol proxy, both from the binary, answer /api/chat."""
    agent_port, proxy_port = free_port(), free_port()
    agent = started(
        "server",
        "--backend",
        "llamacpp",
        "--model",
        str(tiny_model),
        "--model-name",
        "tiny",
        "--llama-server-bin",
        str(llama_bins.llama_server),
        "--ctx-size",
        "512",
        "--threads",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(agent_port),
    )
    wait_for("olol server", lambda: port_open(agent_port), agent)
    proxy = started("proxy", "--host", "127.0.0.1", "--port", str(proxy_port), "--servers", f"127.0.0.1:{agent_port}")
    base = f"http://127.0.0.1:{proxy_port}"
    tags = wait_for(
        "olol proxy with the agent's model",
        lambda: [m["name"] for m in http_json(f"{base}/api/tags", timeout=5)["models"] if "tiny" in m["name"]],
        proxy,
    )
    answer = http_json(
        f"{base}/api/chat",
        {
            "model": tags[0],
            "messages": [{"role": "user", "content": "Hello"}],
            "stream": False,
            "options": {"num_predict": 8, "temperature": 0, "seed": 1},
        },
        timeout=120,
    )
    assert answer["done"] is True and answer["message"]["role"] == "assistant"
    assert answer["message"]["content"].strip() and answer["eval_count"] > 0
    # The dashboard's files (package data, not modules) came along inside the binary.
    for path, marker in (("/ui/", b"OLOL"), ("/ui/static/dashboard.js", b"olol.apiKey"),
                         ("/ui/static/uPlot.iife.min.js", b"uPlot")):
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            assert resp.status == 200 and marker in resp.read(), path

    # The client mode, from the same binary, straight to the agent.
    client = olol(
        binary,
        bare_env,
        "client",
        "--host",
        "127.0.0.1",
        "--port",
        str(agent_port),
        "--model",
        "tiny",
        "--prompt",
        "Hello",
        "--chat",
        "-n",
        "8",
        "--temperature",
        "0",
        "--no-stream",
        timeout=120,
    )
    assert client.stdout.strip()

    # systemd stops a unit with SIGTERM to the binary: each mode drains and exits, children included.
    for proc in (proxy, agent):
        code, out = started.stop(proc)
        assert code == 0, out

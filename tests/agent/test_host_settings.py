"""Host tuning settings: resolved from flag > Ollama's variable > config key > default, and applied:
llama-server's command line, `ollama serve`'s environment, request defaults, the memory cap."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from olol.agent.config import AgentConfig
from olol.agent.server import AioAgent
from olol.backends.agent import AgentBackend
from olol.backends.factory import make_local_backend
from olol.backends.host_settings import HostSettings
from olol.backends.llamacpp.process import LlamaServerConfig
from olol.backends.ollama.serve import SupervisedOllamaBackend
from olol.cli import app
from olol.cli.host_options import host_settings
from olol.config import ConfigError, Settings
from olol.proto import pb

REPO = Path(__file__).resolve().parents[2]


def resolve(env: dict[str, str] | None = None, file: dict[str, Any] | None = None, **flags: Any) -> HostSettings:
    s = Settings("server", file or {}, env or {})
    names = ("flash_attention", "numa", "keep_alive", "memory_lock", "load_timeout", "quantize", "context_window",
             "debug", "max_memory")  # fmt: skip
    return host_settings(s, {n: flags.get(n) for n in names}, log_level="info")


def test_defaults_are_ollamas() -> None:
    h = resolve()
    assert (h.keep_alive, h.load_timeout, h.quantize, h.flash_attention, h.context_window) == (None, 300.0, "f16",
                                                                                               False, None)
    assert h.keep_alive_ns == 300 * 10**9 and h.effective()["keep_alive"] == "5m"  # Ollama's default


def test_ollama_variables_then_config_keys_then_flags() -> None:
    env = {
        "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_NUMA": "true", "OLLAMA_KEEP_ALIVE": "1h", "OLLAMA_MEMORY_LOCK": "1",
        "OLLAMA_LOAD_TIMEOUT": "90s", "OLLAMA_QUANTIZE": "q8_0", "OLLAMA_CONTEXT_WINDOW": "8192",
        "OLLAMA_DEBUG": "1", "OLOL_MAX_MEMORY": "12GiB",
    }  # fmt: skip
    h = resolve(env)
    assert h == HostSettings(
        flash_attention=True, numa=True, keep_alive="1h", memory_lock=True, load_timeout=90.0, quantize="q8_0",
        context_window=8192, debug=True, log_level="info", max_memory=12 << 30,
    )  # fmt: skip
    file = {"server": {"keep_alive": -1, "quantize": "q5_0", "context_window": 16384, "load_timeout": 120}}
    from_file = resolve({}, file)
    assert (from_file.keep_alive, from_file.quantize, from_file.context_window, from_file.load_timeout) == (
        "-1", "q5_0", 16384, 120.0)
    assert resolve(env, file).quantize == "q8_0"  # the variable beats the file
    assert resolve(env, file, quantize="f16", keep_alive="0").quantize == "f16"  # the flag beats both
    assert resolve(env, file, keep_alive="0").keep_alive == "0"
    assert resolve({"OLLAMA_KV_CACHE_TYPE": "q4_0"}).quantize == "q4_0"  # Ollama's own name is read too


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OLLAMA_QUANTIZE": "q3"}, "quantize must be one of"),
        ({"OLLAMA_KEEP_ALIVE": "soon"}, "invalid duration"),
        ({"OLLAMA_LOAD_TIMEOUT": "0"}, "load timeout must be positive"),
        ({"OLLAMA_FLASH_ATTENTION": "maybe"}, "OLLAMA_FLASH_ATTENTION"),
    ],
)
def test_bad_values_are_refused_with_the_source(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(env)


def test_quantized_kv_cache_needs_flash_attention_as_in_ollama() -> None:
    assert HostSettings(quantize="q8_0").kv_cache_type == "f16"
    assert HostSettings(quantize="q8_0", flash_attention=True).kv_cache_type == "q8_0"
    assert HostSettings(quantize="q8_0").effective()["kv_cache_type"] == "f16"


def test_llama_server_command_line_carries_every_setting(tmp_path: Path) -> None:
    h = HostSettings(flash_attention=True, numa=True, memory_lock=True, quantize="q8_0", context_window=1024,
                     debug=True, load_timeout=42.0)  # fmt: skip
    config = LlamaServerConfig(model_path=tmp_path / "m.gguf", parallel=3, **h.llama_server_options())
    argv = config.argv(Path("/bin/llama-server"), 0)
    joined = " ".join(argv)
    assert "-c 3072" in joined and "--parallel 3" in joined  # 1024 per slot, three slots
    assert "-fa on" in joined and "-ctk q8_0 -ctv q8_0" in joined
    assert "--numa distribute" in joined and "--load-mode mmap+mlock" in joined and "-lv 4" in joined
    assert config.ready_timeout == 42.0
    plain = LlamaServerConfig(model_path=tmp_path / "m.gguf").argv(Path("/bin/llama-server"), 0)
    assert "-fa off" in " ".join(plain) and "-c 8192" in " ".join(plain) and "--load-mode" not in plain


def test_ollama_serve_environment_sets_only_what_was_tuned() -> None:
    assert HostSettings().ollama_environment("127.0.0.1:1") == {"OLLAMA_HOST": "127.0.0.1:1",
                                                                "OLLAMA_LOAD_TIMEOUT": "300s"}


def test_request_defaults_fill_only_what_the_client_left_unset() -> None:
    h = HostSettings(keep_alive="1h", context_window=8192)
    assert h.request_defaults({"model": "m"}) == {"model": "m", "keep_alive": "1h", "options": {"num_ctx": 8192}}
    kept = {"model": "m", "keep_alive": 0, "options": {"num_ctx": 512, "temperature": 0}}
    assert h.request_defaults(kept) == kept
    assert h.request_defaults({"model": "m", "options": {"num_ctx": None}})["options"] == {"num_ctx": 8192}
    # Nothing set on the host: an Ollama host's own defaults (its OLLAMA_KEEP_ALIVE) hold.
    assert HostSettings().request_defaults({"model": "m"}) == {"model": "m"}


def test_help_shows_every_setting_with_its_variable() -> None:
    out = CliRunner().invoke(app, ["server", "--help"], env={"COLUMNS": "200"}).output
    for flag, var in [
        ("--flash-attention", "OLLAMA_FLASH_ATTENTION"), ("--numa", "OLLAMA_NUMA"),
        ("--keep-alive", "OLLAMA_KEEP_ALIVE"), ("--memory-lock", "OLLAMA_MEMORY_LOCK"),
        ("--load-timeout", "OLLAMA_LOAD_TIMEOUT"), ("--quantize", "OLLAMA_QUANTIZE"),
        ("--context-window", "OLLAMA_CONTEXT_WINDOW"), ("--debug", "OLLAMA_DEBUG"),
        ("--max-memory", "OLOL_MAX_MEMORY"), ("--ollama-serve", "OLOL_OLLAMA_SERVE"),
        ("--ctx-size", "OLOL_SERVER_CTX_SIZE"), ("--log-level", "OLLAMA_LOG_LEVEL"),
    ]:  # fmt: skip
        assert flag in out and var in out, flag


# ---------------------------------------------------------------------- --ollama-serve

FAKE_OLLAMA = """#!{python}
# A stand-in for `ollama`: records the environment it was started with, then serves the simulator
# where OLLAMA_HOST says, as `ollama serve` would.
import json, os, sys
assert sys.argv[1:] == ["serve"], sys.argv
with open(os.environ["FAKE_OLLAMA_RECORD"], "a") as out:
    out.write(json.dumps({{k: v for k, v in os.environ.items() if k.startswith("OLLAMA_")}}) + "\\n")
host, port = os.environ["OLLAMA_HOST"].rsplit(":", 1)
os.execv(sys.executable, [sys.executable, "-m", "tests.support.ollama_sim", "--host", host, "--port", port,
                          "--models", "llama3.2"])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    script = tmp_path / "bin" / "ollama"
    script.parent.mkdir()
    script.write_text(FAKE_OLLAMA.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "env.jsonl"
    monkeypatch.setenv("FAKE_OLLAMA_RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return script, record


async def test_ollama_serve_gets_every_variable_and_is_restarted(fake_ollama: tuple[Path, Path]) -> None:
    _, record = fake_ollama
    url = f"http://127.0.0.1:{_free_port()}"
    settings = HostSettings(flash_attention=True, keep_alive="1h", quantize="q8_0", context_window=8192,
                            load_timeout=90.0, debug=True, max_memory=4 << 30)  # fmt: skip
    config = AgentConfig(host="127.0.0.1", port=0, ollama_host=url, ollama_serve=True, settings=settings,
                         state_interval=0.2)  # fmt: skip
    backend = make_local_backend(config)
    assert isinstance(backend, SupervisedOllamaBackend)
    agent = await AioAgent.start(config, backend)
    client = AgentBackend(agent.target)
    try:
        env = json.loads(record.read_text().splitlines()[0])
        assert env == {
            "OLLAMA_HOST": url.removeprefix("http://"), "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KEEP_ALIVE": "1h",
            "OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_LOAD_TIMEOUT": "90s",
            "OLLAMA_DEBUG": "1",
        }  # fmt: skip
        request = {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 2}}
        assert [c async for c in client.generate(request)][-1]["done"]
        # It dies: the agent starts it again, with the same environment, and serves on.
        first_pid = backend.serve.pid
        assert first_pid is not None
        os.kill(first_pid, 9)
        async with asyncio.timeout(30):
            while backend.serve.restarts < 1:
                await asyncio.sleep(0.05)
        assert backend.serve.pid not in (None, first_pid)
        assert json.loads(record.read_text().splitlines()[1]) == env
        assert [c async for c in client.generate(request)][-1]["done"]
        # The settings in force are reported, the cap included.
        version = await client.version_info()
        assert version.settings["keep_alive"] == "1h" and version.settings["max_memory"] == str(4 << 30)
        hardware = await client.hardware()
        assert int(hardware["memory_cap"]) == 4 << 30 and int(hardware["ram_total"]) <= 4 << 30
        assert hardware["settings"]["kv_cache_type"] == "q8_0"
    finally:
        await client.close()
        await agent.stop()
    assert backend.serve.pid is None


async def test_ollama_serve_without_an_executable_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    backend = SupervisedOllamaBackend("http://127.0.0.1:1", HostSettings())
    with pytest.raises(Exception, match="no 'ollama' executable on PATH"):
        await backend.start()
    await backend.close()


def test_hardware_report_settings_field_exists() -> None:
    report = pb.HardwareReport(memory_cap=5)
    report.settings["numa"] = "false"
    assert report.memory_cap == 5


async def test_cap_and_settings_show_in_api_status_and_the_state_feed(ollama_sim_factory: Any) -> None:
    from olol.backends.ollama.backend import OllamaBackend
    from tests.proxy.helpers import proxy_over
    from tests.support.agent_fixtures import start_agent

    sim = await ollama_sim_factory()
    settings = HostSettings(flash_attention=True, keep_alive="10m", max_memory=3 << 30)
    agent = await start_agent("asyncio", OllamaBackend(sim.url, settings=settings), settings=settings)
    try:
        state = await anext(agent.client.watch_state(0.2))
        assert int(state["ram_total"]) <= 3 << 30 and int(state["ram_free"]) <= 3 << 30
        async with proxy_over(agent.target) as proxy, aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while True:
                    async with http.get(proxy.url + "/api/status") as r:
                        (host,) = (await r.json())["hosts"]
                    if host["healthy"] and "ram_total" in host["hardware"]:
                        break
                    await asyncio.sleep(0.05)
        assert host["hardware"]["settings"]["max_memory"] == str(3 << 30)
        assert host["hardware"]["settings"]["flash_attention"] == "true"
        assert host["hardware"]["settings"]["keep_alive"] == "10m"
        assert host["hardware"]["ram_total"] <= 3 << 30
        # The host's keep_alive goes on a request that sets none.
        await collect_all(agent.client.generate({"model": "llama3.2", "prompt": "hi"}))
        async with aiohttp.ClientSession() as http, http.get(sim.url + "/api/ps") as r:
            (loaded,) = (await r.json())["models"]
        expires = datetime.fromisoformat(loaded["expires_at"].replace("Z", "+00:00"))
        assert expires - datetime.now(UTC) > timedelta(minutes=9)  # the sim's own default is 5m
    finally:
        await agent.client.close()
        await agent.stop()


async def collect_all(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def test_olol_server_builds_the_agent_config_from_ollamas_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[AgentConfig] = []
    monkeypatch.setattr("olol.agent.server.run_agent", seen.append)
    (tmp_path / "olol.toml").write_text('[server]\nnuma = true\nkeep_alive = "-1"\nmax_memory = "2GiB"\n')
    env = {"OLLAMA_FLASH_ATTENTION": "true", "OLLAMA_CONTEXT_WINDOW": "16384", "OLLAMA_QUANTIZE": "q5_0",
           "OLLAMA_DEBUG": "", "OLLAMA_LOG_LEVEL": "warning"}  # fmt: skip
    argv = ["server", "--backend", "llamacpp", "--models-dir", str(tmp_path), "--config", str(tmp_path / "olol.toml"),
            "--keep-alive", "1h", "--parallel", "2"]  # fmt: skip
    result = CliRunner().invoke(app, argv, env=env)
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert cfg.settings == HostSettings(flash_attention=True, numa=True, keep_alive="1h", quantize="q5_0",
                                        context_window=16384, log_level="warning", max_memory=2 << 30)  # fmt: skip
    assert cfg.ctx_size == 16384 and cfg.parallel == 2 and cfg.backend == "llamacpp"
    bad = CliRunner().invoke(app, ["server", "--quantize", "q3"], env={})
    assert bad.exit_code == 2 and "quantize must be one of" in bad.output


def test_slot_counts_that_do_not_divide_the_batch_get_one_that_loads(tmp_path: Path) -> None:
    def argv(parallel: int, embeddings: bool = True) -> str:
        config = LlamaServerConfig(model_path=tmp_path / "m.gguf", parallel=parallel, embeddings=embeddings)
        return " ".join(config.argv(Path("llama-server"), 0))

    assert "-ub 510" in argv(3) and "-b 510" in argv(3)
    assert "-ub" not in argv(4) and "-ub" not in argv(3, embeddings=False)


def test_a_quiet_log_level_still_shows_the_line_that_gives_the_port(tmp_path: Path) -> None:
    # `--port 0` is read back from llama-server's info-level "listening on" line: at -lv 2 (warnings) the
    # server was never found ready (olol demo hung for its whole load timeout).
    quiet = HostSettings(log_level="warning").llama_server_options()
    config = LlamaServerConfig(model_path=tmp_path / "m.gguf", **quiet)
    assert "-lv 3" in " ".join(config.argv(Path("/bin/llama-server"), 0))
    assert "-lv 2" in " ".join(config.argv(Path("/bin/llama-server"), 8080))  # a fixed port needs no log line

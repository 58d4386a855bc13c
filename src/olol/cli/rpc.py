"""`olol rpc-server`: a ggml RPC worker host (llama.cpp's ggml-rpc-server behind OLOL's tunnel).

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.common import parse_size as _size
from olol.cli.options import Given, resolve, settings_options
from olol.config import ConfigError, setting


def no_grpc_fork_handlers() -> None:
    """Call before grpc is imported. These modes spawn llama.cpp processes while gRPC's threads run,
    and gRPC's fork handlers make a share of such children crash before they exec (measured: 5 of 60
    spawns with a preexec_fn). OLOL never uses gRPC in a forked child, so it needs no fork support."""
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


#: Environment variables of `olol rpc-server`'s settings that have no historical name of their own.
ENV_PREFIX = "OLOL_RPC_"


@dataclass
class RpcServerOptions:
    """`olol rpc-server`'s own settings (the runtime `RpcServerConfig` nests them; the CLI maps them)."""

    host: str = setting("0.0.0.0", "--host", help="Address for the gRPC service.")
    port: int = setting(50052, "--port", "-p", help="gRPC port.", env="OLOL_RPC_PORT")
    data_port: int | None = setting(
        None, "--data-port",
        help="Port of the tunnel's data path (ggml bytes on TCP/TLS, admitted by tickets from the gRPC service; "
        "0: any free).", type=int, shown="--port + 1",
    )
    no_data_port: bool = setting(
        False, "--no-data-port", help="No data port: coordinators tunnel through gRPC messages (slower)."
    )
    rpc_bin: str | None = setting(None, "--rpc-bin", help="ggml-rpc-server executable.", env="OLOL_RPC_SERVER",
                                  shown="found or built")
    device: str = setting("auto", "--device", help="auto, cpu, cuda, rocm, metal, vulkan, or ggml device names "
                          "(CUDA0,CUDA1).")
    threads: int | None = setting(None, "--threads", "-t", help="CPU threads of the worker.", type=int,
                                  shown="llama.cpp's")
    cache: bool = setting(
        False, "--cache/--no-cache", help="Keep llama.cpp's tensor cache (-c), so reloads skip weight transfers.",
        shown="off, on with --preseed",
    )
    cache_dir: str = setting("~/.cache/olol/rpc-cache", "--cache-dir",
                             help="Tensor cache directory ($LLAMA_CACHE of the worker).")
    preseed: list[str] = setting(
        [], "--preseed", help="GGUF file on this host whose weights go into the tensor cache before serving "
        "(repeatable); implies --cache.", type=list[str],
    )
    worker_host: str = setting(
        "127.0.0.1", "--worker-host",
        help="Bind of the ggml worker: keep loopback unless coordinators use --transport direct.",
    )
    worker_port: int = setting(0, "--worker-port", help="Port of the ggml worker; 0: a free one.")
    worker_isolation: bool = setting(
        True, "--worker-isolation/--no-worker-isolation",
        help="Linux: run a loopback ggml worker in a network namespace of its own, so no other local user "
        "can reach it or hold its one connection (where none can be made: the host's loopback, with a warning). "
        "Off: on the host's 127.0.0.1, for coordinators on this host using --transport direct.",
    )
    max_frame: str = setting("4GiB", "--max-frame", help="Largest ggml message accepted.")
    max_memory: str | None = setting(
        None, "--max-memory", help="Memory per device offered to split models (e.g. 12GiB).", shown="all free"
    )
    no_speed_test: bool = setting(False, "--no-speed-test", help="Skip the speed measurement at start.")
    flash_attention: bool = setting(False, "--flash-attention", help="Advisory: ask for -fa on.")
    context_window: int = setting(0, "--context-window", help="Advisory: largest context to plan for; 0: any.")
    quantize: str = setting("", "--quantize", help="Advisory: KV cache type (f16, q8_0, q4_0).", shown="none")


#: What `olol rpc-server` takes: its own settings and the bundles it shares with other modes.
SETTINGS = (RpcServerOptions, sec.TokenTls, sec.Advertise, sec.Lan)


def register(app: typer.Typer) -> None:
    @app.command("rpc-server")
    @settings_options(*SETTINGS, env_prefix=ENV_PREFIX)
    def rpc_server(given: Given, config: Path = CONFIG_OPTION, log_level: str = LOG_LEVEL_OPTION) -> None:
        """Serve this host's compute as a ggml RPC worker (llama.cpp) for models split across hosts.

        --flash-attention, --context-window and --quantize are advisory: the worker reports them and
        the coordinator's llama-server applies them (-fa on, a cap on -c, the KV cache type).

        Coordinators reach the worker through OLOL's tunnel: tickets from the gRPC service (cluster
        token, optional TLS) admit them to the data port (--data-port, default --port + 1), which
        validates every ggml frame before the worker sees it. On Linux the worker itself runs in a
        network namespace of its own (--worker-isolation): no other local user can connect to it.

        With --discovery it advertises itself over mDNS (role "rpc", signed with the cluster
        token): `olol dist --discovery` finds it, and proxies keep it apart from inference hosts.
        With --proxy it registers with that proxy (signed, renewed, withdrawn on stop), which works
        across subnets: the proxy lists it with its rpc-servers for --distributed.

        Examples:
          olol rpc-server --token-file ~/.olol/token
          olol rpc-server --token-file ~/.olol/token --discovery --interface eth0
          olol rpc-server --token-file ~/.olol/token --proxy proxy.lan:8000
          olol rpc-server --device cuda --preseed ~/models/llama-3-70b.Q4_K_M.gguf
        """
        no_grpc_fork_handlers()
        from olol.rpc.server import DATA_PORT_AUTO, RpcServerConfig, run_rpc_server
        from olol.rpc.service import WorkerAdvice
        from olol.rpc.worker import WorkerConfig

        s = settings("rpc-server", config)
        setup_logging(s, log_level)
        try:
            o = RpcServerOptions(**resolve(RpcServerOptions, s, given, env_prefix=ENV_PREFIX))
            seeds = [Path(p).expanduser() for p in o.preseed]
            missing = [str(p) for p in seeds if not p.is_file()]
            if missing:
                fail(f"--preseed: no such file: {', '.join(missing)}")
            token, tls = sec.token_and_tls(s, given, ENV_PREFIX)
            cfg = RpcServerConfig(
                host=o.host,
                port=o.port,
                data_port=None if o.no_data_port else DATA_PORT_AUTO if o.data_port is None else o.data_port,
                token=token,
                tls=tls,
                worker=WorkerConfig(
                    binary=as_path(o.rpc_bin),
                    host=o.worker_host,
                    port=o.worker_port,
                    isolate=o.worker_isolation,
                    threads=o.threads,
                    device=o.device,
                    cache_dir=Path(o.cache_dir).expanduser() if o.cache or seeds else None,
                    measure_speed=not o.no_speed_test,
                ),
                preseed=seeds,
                max_frame=_size(o.max_frame),
                memory_limit=_size(o.max_memory) if o.max_memory else None,
                advice=WorkerAdvice(
                    flash_attention=o.flash_attention, context_window=o.context_window, quantize=o.quantize
                ),
                discovery=sec.discovery_settings(s, given, ENV_PREFIX, sec.Advertise),
            )
        except (ConfigError, ValueError, OSError) as exc:
            fail(str(exc))
        from olol.backends.llamacpp.bins import LlamaBinaryNotFound
        from olol.rpc.devices import DeviceError
        from olol.rpc.worker import WorkerUnavailable

        try:
            run_rpc_server(cfg)
        except (LlamaBinaryNotFound, DeviceError, WorkerUnavailable, OSError, ValueError) as exc:
            fail(str(exc), code=1)


def as_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None

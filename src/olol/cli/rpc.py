"""`olol rpc-server`: a ggml RPC worker host (llama.cpp's ggml-rpc-server behind OLOL's tunnel)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from olol.cli import security_options as sec
from olol.cli.common import CONFIG_OPTION, LOG_LEVEL_OPTION, fail, settings, setup_logging
from olol.cli.common import parse_size as _size
from olol.config import ConfigError

# Shared with `olol dist`: the same cluster token on both ends of the tunnel.
TOKEN_OPTION = typer.Option(
    None, "--token", help="Cluster token \\[env var: OLOL_TOKEN; prefer it or --token-file: a flag shows in `ps`]."
)
TOKEN_FILE_OPTION = typer.Option(None, "--token-file",
    help="File holding the cluster token \\[env var: OLOL_TOKEN_FILE].")


def no_grpc_fork_handlers() -> None:
    """Call before grpc is imported. These modes spawn llama.cpp processes while gRPC's threads run,
    and gRPC's fork handlers make a share of such children crash before they exec (measured: 5 of 60
    spawns with a preexec_fn). OLOL never uses gRPC in a forked child, so it needs no fork support."""
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


def register(app: typer.Typer) -> None:
    @app.command("rpc-server")
    def rpc_server(
        host: str = typer.Option(
            None, "--host", help="Address for the gRPC service.  \\[default: 0.0.0.0]", show_default=False
        ),
        port: int = typer.Option(
            None, "--port", "-p", help="gRPC port \\[env var: OLOL_RPC_PORT].  \\[default: 50052]", show_default=False
        ),
        data_port: int = typer.Option(
            None,
            "--data-port",
            help="Port of the tunnel's data path (ggml bytes on TCP/TLS, admitted by tickets from the "
            "gRPC service; 0: any free).  \\[default: --port + 1]",
            show_default=False,
        ),
        no_data_port: bool = typer.Option(
            None, "--no-data-port", help="No data port: coordinators tunnel through gRPC messages (slower)."
        ),
        rpc_bin: str = typer.Option(None, "--rpc-bin", help="ggml-rpc-server executable \\[env var: OLOL_RPC_SERVER]."),
        device: str = typer.Option(
            None,
            "--device",
            help="auto, cpu, cuda, rocm, metal, vulkan, or ggml device names (CUDA0,CUDA1).  \\[default: auto]",
            show_default=False,
        ),
        threads: int = typer.Option(None, "--threads", "-t", help="CPU threads of the worker (default: llama.cpp's)."),
        cache: bool = typer.Option(
            None,
            "--cache/--no-cache",
            help="Keep llama.cpp's tensor cache (-c), so "
            "reloads skip weight transfers.  \\[default: off, on with --preseed]",
            show_default=False,
        ),
        cache_dir: Path = typer.Option(
            None,
            "--cache-dir",
            help="Tensor cache directory ($LLAMA_CACHE of the worker).  \\[default: ~/.cache/olol/rpc-cache]",
            show_default=False,
        ),
        preseed: list[Path] = typer.Option(
            None,
            "--preseed",
            help="GGUF file on this host whose weights go into "
            "the tensor cache before serving (repeatable); implies --cache.",
        ),
        worker_host: str = typer.Option(
            None,
            "--worker-host",
            help="Bind of the ggml worker: keep loopback "
            "unless coordinators use --transport direct.  \\[default: 127.0.0.1]",
            show_default=False,
        ),
        worker_port: int = typer.Option(
            None, "--worker-port", help="Port of the ggml worker.  \\[default: free]", show_default=False
        ),
        token: str = TOKEN_OPTION,
        token_file: Path = TOKEN_FILE_OPTION,
        tls_cert: Path = typer.Option(None, "--tls-cert", help="PEM certificate: serve gRPC over TLS."),
        tls_key: Path = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
        tls_ca: Path = typer.Option(None, "--tls-ca", help="PEM CA: require client certificates it signed."),
        max_frame: str = typer.Option(
            None, "--max-frame", help="Largest ggml message accepted.  \\[default: 4GiB]", show_default=False
        ),
        max_memory: str = typer.Option(
            None,
            "--max-memory",
            help="Memory per device offered to split models (e.g. 12GiB).  \\[default: all free]",
            show_default=False,
        ),
        no_speed: bool = typer.Option(None, "--no-speed-test", help="Skip the speed measurement at start."),
        flash_attention: bool = typer.Option(None, "--flash-attention", help="Advisory: ask for -fa on."),
        context_window: int = typer.Option(None, "--context-window", help="Advisory: largest context to plan for."),
        quantize: str = typer.Option(None, "--quantize", help="Advisory: KV cache type (f16, q8_0, q4_0)."),
        discovery: bool = sec.DISCOVERY_AGENT,
        interface: str = sec.INTERFACE,
        cluster: str = sec.CLUSTER,
        proxy: list[str] = sec.PROXY,
        advertise_host: str = sec.ADVERTISE_HOST,
        config: Path = CONFIG_OPTION,
        log_level: str = LOG_LEVEL_OPTION,
    ) -> None:
        """Serve this host's compute as a ggml RPC worker (llama.cpp) for models split across hosts.

        --flash-attention, --context-window and --quantize are advisory: the worker reports them and
        the coordinator's llama-server applies them (-fa on, a cap on -c, the KV cache type).

        Coordinators reach the worker through OLOL's tunnel: tickets from the gRPC service (cluster
        token, optional TLS) admit them to the data port (--data-port, default --port + 1), which
        validates every ggml frame before the worker sees it.

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
        from olol.rpc.server import DATA_PORT_AUTO, DEFAULT_MAX_FRAME, RpcServerConfig, run_rpc_server
        from olol.rpc.service import WorkerAdvice
        from olol.rpc.worker import WorkerConfig
        from olol.security.tls import TlsFiles
        from olol.security.tokens import load_token

        s = settings("rpc-server", config)
        setup_logging(s, log_level)
        try:
            seeds = [Path(p).expanduser() for p in (preseed or s.get("preseed", None, []))]
            missing = [str(p) for p in seeds if not p.is_file()]
            if missing:
                fail(f"--preseed: no such file: {', '.join(missing)}")
            use_cache = s.get("cache", cache, False) or bool(seeds)
            directory = Path(s.get("cache_dir", str(cache_dir) if cache_dir else None, "~/.cache/olol/rpc-cache"))
            frame = s.get("max_frame", max_frame, str(DEFAULT_MAX_FRAME))
            cfg = RpcServerConfig(
                host=s.get("host", host, "0.0.0.0"),
                port=s.get("port", port, 50052, env="OLOL_RPC_PORT"),
                data_port=None
                if s.get("no_data_port", no_data_port, False)
                else s.get("data_port", data_port, DATA_PORT_AUTO),
                token=load_token(s.get("token", token, None), s.get("token_file", as_str(token_file), None)),
                tls=TlsFiles(
                    s.get("tls_cert", as_str(tls_cert), None),
                    s.get("tls_key", as_str(tls_key), None),
                    s.get("tls_ca", as_str(tls_ca), None),
                ),
                worker=WorkerConfig(
                    binary=as_path(s.get("rpc_bin", rpc_bin, None, env="OLOL_RPC_SERVER")),
                    host=s.get("worker_host", worker_host, "127.0.0.1"),
                    port=s.get("worker_port", worker_port, 0),
                    threads=s.get("threads", threads, None),
                    device=s.get("device", device, "auto"),
                    cache_dir=directory.expanduser() if use_cache else None,
                    measure_speed=not s.get("no_speed_test", no_speed, False),
                ),
                preseed=seeds,
                max_frame=_size(frame) if isinstance(frame, str) else int(frame),
                memory_limit=_size(str(limit)) if (limit := s.get("max_memory", max_memory, None)) else None,
                advice=WorkerAdvice(
                    flash_attention=s.get("flash_attention", flash_attention, False),
                    context_window=s.get("context_window", context_window, 0),
                    quantize=s.get("quantize", quantize, ""),
                ),
                discovery=sec.discovery_settings(
                    s,
                    discovery=discovery,
                    interface=interface,
                    cluster=cluster,
                    proxy=proxy,
                    advertise_host=advertise_host,
                ),
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


def as_str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def as_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None

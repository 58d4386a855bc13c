"""The CLI as a new user meets it: 80 columns, unreachable or wrong URLs, typos, --version, a busy port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import olol
from olol.cli import app
from olol.cli.models import render_models
from olol.cli.status import render_status

LONG_HOST = "http://gpu-server-number-one.example.lan:11434"
LONG_MODEL = "qwen2.5-coder:32b-instruct-q4_K_M"


def text_at(renderable: Any, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_status_at_80_columns_keeps_urls_and_names_whole_and_says_why_a_host_is_down() -> None:
    hosts = [
        {"id": LONG_HOST, "kind": "ollama", "healthy": True, "in_flight": 1, "capacity": 4,
         "models": [LONG_MODEL, "llama3.2:latest"], "loaded": [LONG_MODEL], "latency": {}},
        {"id": "10.0.0.12:50051", "kind": "llamacpp", "healthy": False, "models": ["tiny:latest"],
         "last_error": "connection refused"},
    ]
    for width in (80, 200):
        text = text_at(render_status({"balancer": "adaptive", "hosts": hosts}), width)
        assert max(len(line) for line in text.splitlines()) <= width
        for token in (LONG_HOST, LONG_MODEL, "llama3.2:latest", "10.0.0.12:50051", "tiny:latest"):
            assert token in text, (width, token, text)
        assert "down: connection refused" in " ".join(text.split())


def test_models_sizes_are_human_and_names_whole_at_80_columns() -> None:
    tags = {"models": [
        {"name": "tiny:latest", "size": 1_000_000, "olol": {"hosts": [LONG_HOST]}},
        {"name": LONG_MODEL, "size": 37_000_000, "olol": {"hosts": [LONG_HOST, "10.0.0.12:50051"]}},
    ]}
    text = text_at(render_models(tags, {"hosts": []}), 80)
    assert "1.0 MB" in text and "37.0 MB" in text and "0.00 GB" not in text
    assert LONG_HOST in text and LONG_MODEL in text


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pull_against_an_unreachable_proxy_names_it(closed_port: int) -> None:
    result = CliRunner().invoke(app, ["pull", "llama3.2", "--url", f"http://127.0.0.1:{closed_port}"])
    assert result.exit_code == 1
    assert f"cannot reach the proxy at http://127.0.0.1:{closed_port}: Connection refused" in result.output
    assert "Errno" not in result.output


class _Server:
    """A one-route HTTP server: /api/status answers `status` (an OLOL proxy) or 404 (a plain Ollama)."""

    def __init__(self, olol_proxy: bool) -> None:
        self.olol_proxy = olol_proxy
        body = json.dumps({"hosts": [], "balancer": "adaptive"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/api/status" and olol_proxy:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(body)
                else:  # Ollama's own 404
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"404 page not found")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture(params=[True, False], ids=["olol", "plain-ollama"])
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    s = _Server(request.param)
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(5)


def test_url_without_scheme_and_a_plain_ollama(server: _Server) -> None:
    result = CliRunner().invoke(app, ["status", "--url", server.address, "--json"])  # host:port, no scheme
    if server.olol_proxy:
        assert result.exit_code == 0 and json.loads(result.output)["balancer"] == "adaptive"
    else:
        assert result.exit_code == 1
        assert f"http://{server.address} is not an OLOL proxy" in result.output
        assert "404: 404" not in result.output and "unknown url type" not in result.output


def test_json_output_can_be_asked_for_by_the_environment(server: _Server) -> None:
    result = CliRunner().invoke(app, ["status", "--url", server.address], env={"OLOL_JSON": "1"})
    if server.olol_proxy:
        assert result.exit_code == 0 and json.loads(result.output)["balancer"] == "adaptive"


def test_a_mistyped_scheme_in_servers_is_refused() -> None:
    result = CliRunner().invoke(app, ["proxy", "--servers", "htp://gpu1:11434"])
    assert result.exit_code == 2 and "unknown scheme htp://" in result.output


def test_version_flag() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0 and result.output.strip() == f"olol {olol.__version__}"


def test_a_busy_port_is_reported_before_any_host_is_probed(closed_port: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # The only host would take the whole probe timeout to answer: a port check after probing would be slow.
        result = CliRunner().invoke(app, ["proxy", "--host", "127.0.0.1", "--port", str(port),
                                          "--servers", f"http://127.0.0.1:{closed_port}"])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output

"""The framing tables against a real `ggml-rpc-server` (protocol 7.0.0): every reply the
server sends for the probe commands has the size the parser expects."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from olol._fast._framing_py import Frame
from olol._fast._rpc_proto import RpcCommand, encode_request

pytestmark = pytest.mark.slow

CACHED = Path.home() / ".cache/olol/llama.cpp/0.3.36/build/bin/ggml-rpc-server"


def _server_binary() -> Path | None:
    for candidate in (os.environ.get("OLOL_GGML_RPC_SERVER"), shutil.which("ggml-rpc-server"), CACHED):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def rpc_port() -> Iterator[int]:
    binary = _server_binary()
    if binary is None:
        pytest.skip("ggml-rpc-server not built (scripts/build-llama-cpp.sh)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LD_LIBRARY_PATH": str(binary.parent)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            # A refused connect leaves the server alone; a successful one is closed at once,
            # which the one-client-at-a-time server treats as a finished session.
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.skip("ggml-rpc-server did not start")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_real_server_replies_parse(framing: ModuleType, rpc_port: int) -> None:
    requests = framing.FrameParser("request", 1 << 20, handshake=True)
    replies = framing.FrameParser("reply", 1 << 20)
    dev0 = struct.pack("<I", 0)
    session = [
        encode_request(RpcCommand.HELLO, bytes(24)),
        encode_request(RpcCommand.DEVICE_COUNT),
        encode_request(RpcCommand.GET_DEVICE_MEMORY, dev0),
        encode_request(RpcCommand.GET_ALIGNMENT, dev0),
        encode_request(RpcCommand.GET_MAX_SIZE, dev0),
        encode_request(RpcCommand.ALLOC_BUFFER, struct.pack("<IQ", 0, 1 << 20)),
    ]
    got = []
    with socket.create_connection(("127.0.0.1", rpc_port), timeout=10) as sock:
        for message in session:
            (frame,) = requests.feed(message)
            if framing.expects_reply(frame.cmd):
                replies.expect(frame.cmd)
            sock.sendall(message)
            reply: list[Frame] = []
            while not reply:
                chunk = sock.recv(5)  # small reads: real chunk boundaries inside replies
                assert chunk, "server closed the connection: the request was rejected"
                reply = replies.feed(chunk)
            got += reply
        remote_ptr = struct.unpack("<Q", bytes(got[-1].payload)[:8])[0]
        for message in (
            encode_request(RpcCommand.BUFFER_GET_BASE, struct.pack("<Q", remote_ptr)),
            encode_request(RpcCommand.FREE_BUFFER, struct.pack("<Q", remote_ptr)),  # no reply
            encode_request(RpcCommand.DEVICE_COUNT),  # still in step after it
        ):
            for frame in requests.feed(message):
                if framing.expects_reply(frame.cmd):
                    replies.expect(frame.cmd)
            sock.sendall(message)
        while replies.pending_replies or replies.buffered:
            chunk = sock.recv(3)
            assert chunk
            got += replies.feed(chunk)
    names = [RpcCommand(f.cmd).name for f in got]
    assert names == [
        "HELLO",
        "DEVICE_COUNT",
        "GET_DEVICE_MEMORY",
        "GET_ALIGNMENT",
        "GET_MAX_SIZE",
        "ALLOC_BUFFER",
        "BUFFER_GET_BASE",
        "DEVICE_COUNT",
    ]
    assert bytes(got[0].payload)[:3] == bytes((7, 0, 0))  # protocol 7.0.0
    assert struct.unpack("<I", bytes(got[1].payload))[0] >= 1
    assert requests.stats.commands["DEVICE_COUNT"] == 2

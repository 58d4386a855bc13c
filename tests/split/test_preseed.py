"""Weight pre-seeding: a worker host that has the GGUF fills its ggml tensor cache from it, and the
weights llama.cpp hashes (tensors over 10 MiB) then never cross the tunnel at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from olol.rpc.preseed import cached_tensors, load_index
from tests.split.conftest import DistFactory, RpcFactory, complete

pytestmark = pytest.mark.slow


async def test_preseeded_weights_do_not_cross_the_tunnel(
    rpc_server: RpcFactory, dist: DistFactory, tiny_model: Path, tmp_path: Path, baseline_text: str
) -> None:
    # The tiny model's only tensor over llama.cpp's 10 MiB threshold that leaves the coordinator is
    # output.weight (15.6 MiB); token_embd stays on the coordinator's CPU.
    seeded = cached_tensors(tiny_model)
    assert [t.name for t in seeded] == ["output.weight"]
    output_bytes = seeded[0].size

    cold = await rpc_server(worker={"cache_dir": tmp_path / "cold"})
    warm = await rpc_server(worker={"cache_dir": tmp_path / "warm"}, preseed=[tiny_model])
    assert len(load_index(tmp_path / "warm")) == 1  # the seeding was indexed...
    assert len(list((tmp_path / "warm" / "rpc").iterdir())) == 1  # ...and the worker wrote its cache file

    for server, crossed_output in ((cold, True), (warm, False)):
        coordinator = await dist([server])
        assert await complete(coordinator.url) == baseline_text
        stats = server.service.stats.snapshot()
        uploaded = stats.command_bytes.get("SET_TENSOR", 0)
        assert stats.commands["SET_TENSOR_HASH"] == 1  # llama.cpp asked for output.weight by hash
        assert (uploaded > output_bytes) is crossed_output, uploaded
        await coordinator.close()

    # A restart finds the index and the cache file: nothing is seeded again.
    again = await rpc_server(worker={"cache_dir": tmp_path / "warm"}, preseed=[tiny_model])
    assert again.service.stats.snapshot().worker_connections == 0
    assert again.worker.log_tail(50).count("saved to") == 0

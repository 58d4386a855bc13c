"""A short soak in the suite: 1,000 concurrent streams over simulated hosts restarting at random.

The long run (minutes, figures in BENCHMARKS.md) is `python -m bench.bench_soak
--report`; this one is bounded to ~20 s of load so it runs with every test run.
Every request must complete or fail with a clear error, none may hang, and the
proxy's memory must stay bounded.
"""

from __future__ import annotations

import argparse
import os

import pytest

from bench.bench_soak import run

pytestmark = pytest.mark.timeout(300)


async def test_1000_streams_with_random_restarts_complete_or_fail_clearly() -> None:
    args = argparse.Namespace(
        streams=1000,
        duration=float(os.environ.get("OLOL_SOAK_SECONDS", "20")),
        hosts=4,
        via="agents",
        token_rate=4.0,
        predict=12,
        parallel=400,
        restart_every=6.0,
        request_timeout=60.0,
        verbose=False,
    )
    result = await run(args)
    outcomes = result["outcomes"]
    assert isinstance(outcomes, dict)
    print(f"\nsoak: {result}")
    assert result["peak_concurrent"] == 1000
    assert outcomes.get("completed", 0) > 1000
    assert not outcomes.get("hung") and not outcomes.get("unclear"), outcomes
    assert result["restarts"] >= 1
    peak, warm = result["rss_mib_peak"], result["rss_mib_after_warmup"]
    assert isinstance(peak, int) and isinstance(warm, int) and peak < warm * 2, (warm, peak)

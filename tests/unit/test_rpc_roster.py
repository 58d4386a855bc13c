"""RpcRoster: leases, forgetting, and the liveness probe that drops a crashed rpc-server."""

from __future__ import annotations

from olol.discovery.advert import Advert
from olol.discovery.rpc_roster import RpcRoster


def _advert(port: int) -> Advert:
    return Advert(role="rpc", node_id=f"w:{port}", port=port, addresses=("10.0.0.2",), cluster="olol", tls=False)


async def test_two_missed_probes_in_a_row_drop_a_worker_and_an_answer_resets_the_count() -> None:
    roster = RpcRoster()
    roster.seen("a", _advert(1), "10.0.0.2:1", "mdns")
    roster.seen("b", _advert(2), "10.0.0.2:2", "mdns")
    alive = {"10.0.0.2:1": True, "10.0.0.2:2": False}

    async def reachable(target: str) -> bool:
        return alive[target]

    assert await roster.check(reachable) == []  # one miss is a hiccup, not a death
    assert roster.targets() == ["10.0.0.2:1", "10.0.0.2:2"]
    alive["10.0.0.2:2"] = True
    assert await roster.check(reachable) == []  # answered: the count starts over
    alive["10.0.0.2:2"] = False
    assert await roster.check(reachable) == []
    assert await roster.check(reachable) == ["b"]
    assert roster.targets() == ["10.0.0.2:1"] and "b" not in roster.adverts


async def test_a_worker_forgotten_while_probed_is_not_counted() -> None:
    roster = RpcRoster()
    roster.seen("a", _advert(1), "10.0.0.2:1", "mdns")

    async def reachable(target: str) -> bool:
        roster.forget("a", "mDNS goodbye")
        return False

    assert await roster.check(reachable, misses=1) == []
    assert roster.targets() == []


async def test_a_goodbye_cancels_a_read_begun_on_an_earlier_update() -> None:
    """The race behind a flaky CI run: an update's TXT read finishing after the goodbye re-added the host."""
    import asyncio

    from zeroconf import ServiceStateChange

    from olol.discovery.mdns import MdnsBrowser

    events: list[str] = []
    release = asyncio.Event()

    async def found(name: str, advert: Advert, resolved: list[str]) -> None:
        events.append("found " + name)

    async def lost(name: str) -> None:
        events.append("lost " + name)

    browser = MdnsBrowser(found, lost, token=None, cluster="olol")

    async def slow_resolve(zeroconf: object, service_type: str, name: str) -> None:
        await release.wait()
        await found(name, _advert(1), [])

    browser._resolve = slow_resolve  # type: ignore[method-assign]
    browser._on_change(None, "_olol._tcp.local.", "w1", ServiceStateChange.Updated)
    await asyncio.sleep(0)
    browser._on_change(None, "_olol._tcp.local.", "w1", ServiceStateChange.Removed)
    release.set()
    await asyncio.gather(*browser._tasks, return_exceptions=True)
    assert events == ["lost w1"]
    assert browser._resolving == {}

"""Which hosts a model goes to, chosen by free disk and memory, and what each host can do in a copy.

An OLOL agent can be a copy source (it reads its backend's model files) and a
destination (it fetches from a source itself). A plain Ollama host cannot be
read from, but can still receive: the proxy relays the copy into it through
its blob upload API. A llama.cpp agent serves one GGUF file, so it only
receives when named explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from olol._fast import quant
from olol.cluster import Cluster, Host, normalize
from olol.errors import OlolError

__all__ = ["Room", "choose_targets", "held_name", "is_agent", "pull_targets", "survey"]

log = logging.getLogger(__name__)

_CAPACITY_TIMEOUT = 2.0
_DISK_MARGIN = 1.1  # a model must fit with room to spare: Ollama writes the manifest and temp files too


def is_agent(host: Host) -> bool:
    return host.backend.kind == "agent" and hasattr(host.backend, "target")


def held_name(host: Host, model: str) -> str | None:
    """The name under which `host` holds `model` or a compatible variant of it (as routing would accept)."""
    if host.has_model(model):
        return str(host.models[normalize(model)].get("name") or model)
    match = quant.best_match(model, list(host.models))
    return str(host.models[match].get("name") or match) if match is not None else None


@dataclass
class Room:
    host: Host
    holder: str | None  # the name it already holds, if any
    source: bool  # can be read from over the LAN (an agent with a model store)
    receive: bool  # can be copied into (agent or relayed plain Ollama)
    disk_free: int | None = None
    mem_free: int | None = None

    @property
    def kind(self) -> str:
        return self.host.kind


async def _capacity(host: Host) -> tuple[int | None, int | None, bool]:
    """(disk free, memory free, has transfer service) as the host's agent reports them."""
    from olol.transfer.client import TransferClient  # import cost (see replicate._copy): agents only

    try:
        async with TransferClient.like(host.backend) as client:
            cap = await client.capacity(timeout=_CAPACITY_TIMEOUT)
    except (OlolError, TimeoutError) as exc:
        log.debug("no capacity report from %s: %s", host.id, exc)
        return None, host.ram_free, False
    memory = cap.vram_free if cap.vram_free > 0 else cap.ram_free
    return (cap.disk_free if cap.disk_free >= 0 else None), (memory or None), True


async def survey(hosts: Sequence[Host], model: str) -> list[Room]:
    """What each host holds and has room for; agents are asked, plain Ollama hosts are taken as reported."""
    agents = [h for h in hosts if is_agent(h)]
    reports = await asyncio.gather(*(_capacity(h) for h in agents))
    by_id = dict(zip((h.id for h in agents), reports, strict=True))
    rooms = []
    for host in hosts:
        disk, mem, transfer = by_id.get(host.id, (None, host.ram_free, False))
        receives = host.kind == "ollama" or (transfer and host.kind in ("ollama", "llamacpp"))
        rooms.append(
            Room(host, held_name(host, model), source=transfer, receive=receives, disk_free=disk, mem_free=mem)
        )
    return rooms


def choose_targets(
    rooms: Sequence[Room], replicas: int | None, need_bytes: int | None, explicit: Sequence[str] = ()
) -> tuple[list[Room], dict[str, str]]:
    """Hosts for `replicas` copies (None: every healthy host) and why others were left out.

    Hosts that already hold the model count first; then the rest by most free
    memory (the model must run where it lands), then least load. A host whose
    free disk is known to be too small is left out, with the reason reported.
    """
    left_out: dict[str, str] = {}
    if explicit:
        wanted = {normalize_spec(s) for s in explicit}
        chosen = [r for r in rooms if normalize_spec(r.host.id) in wanted and r.host.healthy]
        for spec in explicit:
            if not any(normalize_spec(r.host.id) == normalize_spec(spec) for r in chosen):
                left_out[spec] = "not a healthy host of this cluster"
        return chosen, left_out
    healthy = [r for r in rooms if r.host.routable]  # not onto a host being drained
    holders = [r for r in healthy if r.holder is not None]
    rest = []
    for room in healthy:
        if room.holder is not None:
            continue
        if room.kind == "llamacpp" and replicas is not None:
            left_out[room.host.id] = "a llama.cpp host serves one model file; name it explicitly to copy to it"
            continue
        if need_bytes is not None and room.disk_free is not None and room.disk_free < need_bytes * _DISK_MARGIN:
            left_out[room.host.id] = f"not enough disk ({room.disk_free} bytes free, {need_bytes} needed)"
            continue
        rest.append(room)
    rest.sort(
        key=lambda r: (r.kind == "llamacpp", -(r.mem_free if r.mem_free is not None else -1), r.host.load, r.host.id)
    )
    ordered = holders + rest
    if replicas is None:
        return ordered, left_out
    return ordered[: max(1, replicas)], left_out


def normalize_spec(spec: str) -> str:
    return spec.strip().rstrip("/").lower()


def pull_targets(cluster: Cluster, model: str, replicas: int | None) -> list[Host]:
    """Healthy hosts for `replicas` copies of `model`; None means every healthy host.

    Hosts that already have the model come first (a pull there only verifies),
    then the others by most free memory, then least load: the model must fit
    where it lands, and a busy host should not also be downloading.
    """
    healthy = cluster.healthy_hosts()
    have = [h for h in healthy if h.has_model(model)]
    rest = sorted((h for h in healthy if not h.has_model(model)),
                  key=lambda h: (-(h.ram_free if h.ram_free is not None else -1), h.load, h.id))
    ordered = have + rest
    if replicas is None:
        return ordered
    return ordered[: max(1, replicas)]

"""Placements in progress and recently finished, as `/api/status` shows them.

A request waiting for an on-demand load, a `--min-replicas` re-placement and an
`olol pull` all show up here with per-host progress, so an operator can see why
a request is slow or where a model is going.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from olol.cluster.backend import JSON

__all__ = ["HostProgress", "JobBook", "PlacementJob"]

_KEEP_FINISHED = 20


@dataclass
class HostProgress:
    state: str = "waiting"  # waiting | pulling | copying | done | failed | skipped
    model: str = ""  # the name placed there (a variant when smart quantization chose one)
    via: str = ""  # "registry" or "copy from <host>"
    completed: int = 0
    total: int = 0
    error: str = ""
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def layer(self, digest: str, total: int, completed: int) -> None:
        self.layers[digest] = (total, completed)
        self.total = sum(t for t, _ in self.layers.values())
        self.completed = sum(c for _, c in self.layers.values())

    def to_json(self) -> JSON:
        out: JSON = {
            "state": self.state,
            "model": self.model,
            "via": self.via,
            "completed": self.completed,
            "total": self.total,
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class PlacementJob:
    id: int
    model: str
    reason: str  # "pull" | "on-demand" | "min-replicas"
    hosts: dict[str, HostProgress]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    state: str = "running"  # running | done | failed
    notes: list[str] = field(default_factory=list)

    def host(self, host_id: str) -> HostProgress:
        return self.hosts.setdefault(host_id, HostProgress())

    def finish(self) -> None:
        self.finished = time.time()
        self.state = "done" if any(h.state == "done" for h in self.hosts.values()) else "failed"

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "model": self.model,
            "reason": self.reason,
            "state": self.state,
            "started": self.started,
            "elapsed_s": round((self.finished or time.time()) - self.started, 3),
            "hosts": {h: p.to_json() for h, p in self.hosts.items()},
            "notes": self.notes[-10:],
        }


class JobBook:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.running: dict[int, PlacementJob] = {}
        self.finished: deque[PlacementJob] = deque(maxlen=_KEEP_FINISHED)

    def start(self, model: str, reason: str, hosts: list[str]) -> PlacementJob:
        job = PlacementJob(next(self._ids), model, reason, {h: HostProgress() for h in hosts})
        self.running[job.id] = job
        return job

    def end(self, job: PlacementJob) -> None:
        job.finish()
        self.running.pop(job.id, None)
        self.finished.appendleft(job)

    def busy(self, model: str) -> bool:
        return any(j.model == model for j in self.running.values())

    def to_json(self) -> JSON:
        return {
            "running": [j.to_json() for j in self.running.values()],
            "finished": [j.to_json() for j in self.finished],
        }

"""Counters of the tunnel into the worker, for metrics.

Bytes count what was forwarded each way; commands count the request frames
the tunnel validated, by ggml command (frames of a stream refused for a later
malformed frame are counted but were never forwarded). A tunnel lives as long
as llama-server keeps its model on the worker (hours), so totals include the
parsers of live tunnels, not only finished ones.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from olol._fast.framing import FrameParser, ParserStats

__all__ = ["StatsSnapshot", "TunnelStats"]


@dataclass(frozen=True)
class StatsSnapshot:
    tunnels_total: int = 0
    tunnels_active: int = 0
    tunnels_rejected: int = 0
    bytes_to_worker: int = 0
    bytes_from_worker: int = 0
    worker_connections: int = 0
    commands: dict[str, int] = field(default_factory=dict)
    command_bytes: dict[str, int] = field(default_factory=dict)


class TunnelStats:
    def __init__(self) -> None:
        self.total = 0
        self.rejected = 0
        self.bytes_to_worker = 0
        self.bytes_from_worker = 0
        self.worker_connections = 0
        self._done_commands: Counter[str] = Counter()
        self._done_bytes: Counter[str] = Counter()
        self._live: set[FrameParser] = set()

    def opened(self, parser: FrameParser) -> None:
        self.total += 1
        self._live.add(parser)

    def closed(self, parser: FrameParser) -> None:
        if parser in self._live:
            self._live.discard(parser)
            self._absorb(parser.stats)

    def _absorb(self, stats: ParserStats) -> None:
        self._done_commands.update(stats.commands)
        self._done_bytes.update(stats.command_bytes)

    def snapshot(self) -> StatsSnapshot:
        commands = Counter(self._done_commands)
        command_bytes = Counter(self._done_bytes)
        for parser in self._live:
            stats = parser.stats
            commands.update(stats.commands)
            command_bytes.update(stats.command_bytes)
        return StatsSnapshot(
            tunnels_total=self.total,
            tunnels_active=len(self._live),
            tunnels_rejected=self.rejected,
            bytes_to_worker=self.bytes_to_worker,
            bytes_from_worker=self.bytes_from_worker,
            worker_connections=self.worker_connections,
            commands=dict(commands),
            command_bytes=dict(command_bytes),
        )

"""One progress feed, in Ollama's format, out of the feeds of several hosts pulling at once.

Ollama's pull stream is: "pulling manifest", then per layer `{status, digest,
total, completed}`, then "verifying sha256 digest", "writing manifest",
"success". Merged:
* a phase line is sent once: opening phases ("pulling manifest") as soon as
  one host reaches them, later ones when every host still going has, so
  phases arrive in order and "writing manifest" means written everywhere;
* a layer line reports the fan-out as a whole, as one Ollama would: `total` is
  the layer's size (never summed over replicas: two replicas of a 1 GB layer
  are not a 2 GB download to the user), `completed` the mean over the hosts
  still going, never decreasing, so a client's bar fills once, steadily; a
  line that would repeat the last one for its layer is not sent;
* a failing host gets a status line of its own (an `error` key would make
  clients abort the whole feed), and the others carry on;
* the last line is "success" if any host succeeded, with an `olol` report of
  who did and who did not, or `{"error"}` if none did.

`fan_in` runs the hosts' feeds at once and hands their lines over as they come, for
both pull paths (`/api/pull` to every host, and a placement's `Replication`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from olol.cluster.backend import JSON

__all__ = ["DONE", "ProgressMerger", "fan_in"]

#: What `fan_in` yields for a host once its feed has ended (after its last line, or its exception).
DONE = object()


#: One host's feed, started when called.
Feed = Callable[[], AsyncIterator[object]]


async def fan_in(feeds: Sequence[tuple[str, Feed]]) -> AsyncGenerator[tuple[str, object]]:
    """Run every `(host id, feed)` at once; yield `(host id, item)` as items arrive, where an item is a
    line, the exception the feed raised (reported as that host's failure, never raised here), or `DONE`.

    Closing this generator (`contextlib.aclosing`) cancels the feeds still running and waits for them.
    """
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    async def pump(host_id: str, feed: Feed) -> None:
        try:
            async for item in feed():
                await queue.put((host_id, item))
        except Exception as exc:  # reported on the feed as this host's failure
            await queue.put((host_id, exc))
        await queue.put((host_id, DONE))

    tasks = [asyncio.create_task(pump(host_id, feed)) for host_id, feed in feeds]
    try:
        live = len(tasks)
        while live:
            host_id, item = await queue.get()
            if item is DONE:
                live -= 1
            yield host_id, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ProgressMerger:
    def __init__(self, hosts: Sequence[str]) -> None:
        self.hosts = list(hosts)
        self._layers: dict[str, dict[str, tuple[int, int]]] = {}
        self._shown: dict[str, tuple[int, int]] = {}  # digest -> (total, completed) last sent
        self._phases: dict[str, set[str]] = {}  # phase status -> hosts that reached it, in first-seen order
        self._said: set[str] = set()
        self._layers_started = False
        self.succeeded: list[str] = []
        self.failed: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def _live(self) -> set[str]:
        return {h for h in self.hosts if h not in self.failed and h not in self.skipped}

    def _ready_phases(self) -> list[JSON]:
        live = self._live()
        out: list[JSON] = []
        for phase, reached in self._phases.items():
            if phase in self._said:
                continue
            if self._layers_started and not live <= reached:
                break  # keep phases in order: a later one waits for this one
            self._said.add(phase)
            out.append({"status": phase})
        return out

    def feed(self, host: str, chunk: JSON) -> list[JSON]:
        """Lines to send for one host's chunk (often none: other hosts have yet to reach a phase)."""
        if "error" in chunk:
            return self.fail(host, str(chunk["error"]))
        status = str(chunk.get("status", ""))
        digest = chunk.get("digest")
        if status == "success":
            self.succeeded.append(host)
            return self._ready_phases()
        if digest:
            self._layers_started = True
            layer = self._layers.setdefault(str(digest), {})
            layer[host] = (int(chunk.get("total") or 0), int(chunk.get("completed") or 0))
            live = self._live()
            size = max(t for t, _ in layer.values())
            mean = sum(c for h, (_, c) in layer.items() if h in live) // max(1, len(live))
            shown = self._shown.get(str(digest), (0, 0))
            line = (size, min(size, max(shown[1], mean)))  # a failed host leaving must not move the bar back
            if line == shown:
                return []
            self._shown[str(digest)] = line
            return [{"status": status, "digest": digest, "total": line[0], "completed": line[1]}]
        self._phases.setdefault(status, set()).add(host)
        return self._ready_phases()

    def fail(self, host: str, message: str) -> list[JSON]:
        self.failed[host] = message
        return [{"status": f"{host}: {message}", "olol": {"host": host, "error": message}}, *self._ready_phases()]

    def skip(self, host: str, message: str) -> list[JSON]:
        self.skipped[host] = message
        return [{"status": f"{host}: skipped: {message}", "olol": {"host": host, "skipped": message}},
                *self._ready_phases()]

    def report(self) -> JSON:
        return {"hosts": self.succeeded, "failed": self.failed, "skipped": self.skipped}

    def final(self) -> JSON:
        if self.succeeded:
            return {"status": "success", "olol": self.report()}
        if not self.failed:
            return {"error": "no host could do this: " + "; ".join(f"{h}: {m}" for h, m in self.skipped.items())}
        return {"error": "failed on every host: " + "; ".join(f"{h}: {m}" for h, m in self.failed.items())}

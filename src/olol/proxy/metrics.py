"""Prometheus metrics of one proxy, in its own registry.

A per-proxy `CollectorRegistry` (not prometheus-client's global one) lets tests
and benchmarks run several proxies in one process. Counters and histograms are
updated on the request path; gauges of cluster state are read at scrape time by
a collector, so they can never drift from the state they describe.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from olol.cluster import Cluster
from olol.proxy.admission import AdmissionQueue
from olol.proxy.affinity import SessionAffinity

__all__ = ["Labelled", "ProxyMetrics", "RouteRecord"]

M = TypeVar("M", Counter, Histogram)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RECENT_ROUTES = 50
_RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)


class Labelled(Generic[M]):
    """A labelled metric whose children are looked up once per label values.

    prometheus-client's own `.labels()` validates the values and takes a lock on every call, which
    showed up in the proxy's per-request profile; label values here are few (hosts, models, endpoints).
    """

    __slots__ = ("_children", "metric")

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child

    def total(self, **match: str) -> float:
        """The sum over the label sets of a counter that have the `match` values (all of them by default).

        Read once a second by the dashboard, not per request.
        """
        return sum(s.value for family in self.metric.collect() for s in family.samples
                   if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in match.items()))


@dataclass(frozen=True, slots=True)
class RouteRecord:
    """One routing decision, as the dashboard lists the latest ones."""

    at: float  # wall-clock time (time.time())
    model: str
    host: str
    reason: str  # the policy's name or "affinity:<outcome>"
    ttft_s: float


class _ClusterCollector(Collector):
    def __init__(self, cluster: Cluster, admission: AdmissionQueue, affinity: SessionAffinity | None) -> None:
        self._cluster = cluster
        self._admission = admission
        self._affinity = affinity

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("olol_host_up", "1 if the host is healthy", labels=["host"])
        load = GaugeMetricFamily("olol_host_load", "Outstanding requests on the host", labels=["host"])
        capacity = GaugeMetricFamily("olol_host_capacity", "Parallel request slots of the host", labels=["host"])
        for host in self._cluster.hosts.values():
            up.add_metric([host.id], 1.0 if host.healthy else 0.0)
            load.add_metric([host.id], float(host.load))
            capacity.add_metric([host.id], float(host.parallel))
        yield from self._caches()
        depth = GaugeMetricFamily("olol_queue_depth", "Requests waiting for a host, per model", labels=["model"])
        for model, n in self._admission.depths().items():
            depth.add_metric([model], float(n))
        yield from (up, load, capacity, depth)
        if self._affinity is not None:
            lookups = CounterMetricFamily("olol_affinity_lookups", "Session affinity lookups by outcome",
                                          labels=["outcome"])
            lookups.add_metric(["hit"], float(self._affinity.hits))
            lookups.add_metric(["moved"], float(self._affinity.moved))
            lookups.add_metric(["new"], float(self._affinity.new))
            yield lookups
            yield GaugeMetricFamily("olol_affinity_sessions", "Conversations pinned to a host",
                                    value=float(self._affinity.to_json()["sessions"]))


    def _caches(self) -> Iterator[Metric]:
        prompt = CounterMetricFamily("olol_host_prompt_tokens",
                                     "Prompt tokens sent to the host, of replies that reported cache use",
                                     labels=["host"])
        cached = CounterMetricFamily("olol_host_cached_prompt_tokens",
                                     "Of those, prompt tokens the host served from its KV cache", labels=["host"])
        ratio = GaugeMetricFamily("olol_host_cache_hit_ratio", "Cached / sent prompt tokens", labels=["host"])
        index = GaugeMetricFamily("olol_host_prefix_index_bytes",
                                  "Prompt bytes the proxy's prefix index holds for the host", labels=["host"])
        caches = self._cluster.caches
        for host in self._cluster.hosts.values():
            stats = caches.get(host.id)
            if stats is not None:
                prompt.add_metric([host.id], float(stats.prompt_tokens))
                cached.add_metric([host.id], float(stats.cached_tokens))
                if stats.hit_rate is not None:
                    ratio.add_metric([host.id], stats.hit_rate)
            index.add_metric([host.id], float(caches.indexed(host.id)[0]))
        yield from (prompt, cached, ratio, index)


class ProxyMetrics:
    def __init__(self, cluster: Cluster, admission: AdmissionQueue, affinity: SessionAffinity | None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Labelled(Counter(
            "olol_requests", "Requests answered, by endpoint, model, host and HTTP status",
            ["endpoint", "model", "host", "status"], registry=r))
        self.errors = Labelled(Counter(
            "olol_errors", "Requests that ended in an error, by endpoint and stage", ["endpoint", "stage"], registry=r))
        self.retries = Labelled(Counter(
            "olol_retries", "Requests moved to another host before the first byte", ["host", "reason"], registry=r))
        self.ttft = Labelled(Histogram(
            "olol_ttft_seconds", "Time to first token through the proxy",
            ["host", "model"], buckets=_LATENCY_BUCKETS, registry=r))
        self.tokens_per_s = Labelled(Histogram(
            "olol_tokens_per_second", "Generation speed reported per request",
            ["host", "model"], buckets=_RATE_BUCKETS, registry=r))
        self.queue_wait = Labelled(Histogram(
            "olol_queue_wait_seconds", "Time spent waiting for a free host", ["model"], buckets=_LATENCY_BUCKETS,
            registry=r))
        self.queue_timeouts = Labelled(Counter(
            "olol_queue_timeouts", "Requests refused with 503 after waiting", ["model"], registry=r))
        self.resumes = Labelled(Counter(
            "olol_resumes", "Streams that broke after the first byte, by the host's failure and what followed "
            "(resumed, limit, no_host, refused_<what was relayed>)", ["reason", "outcome"], registry=r))
        self.resume_gap = Histogram(
            "olol_resume_gap_seconds", "Time to open the continuation of a broken stream on another host",
            buckets=_LATENCY_BUCKETS, registry=r)
        r.register(_ClusterCollector(cluster, admission, affinity))
        # The latest routing decisions: a bounded ring, appended to when a request's first byte arrives.
        self.recent: deque[RouteRecord] = deque(maxlen=_RECENT_ROUTES)

    def routed(self, model: str, host: str, reason: str, ttft_s: float) -> None:
        self.recent.append(RouteRecord(time.time(), model, host, reason, ttft_s))

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The shared cluster domain: hosts, the models they hold, their load, latency stats
and what their KV caches hold.

Plain state and bookkeeping only: no I/O. The proxy's monitor fills it in and
its router reads it; other modes can reuse it.
"""

from olol.cluster.caches import CacheBook
from olol.cluster.cluster import Cluster, Lease
from olol.cluster.host import Host
from olol.cluster.names import normalize, same_model
from olol.cluster.stats import Ewma, HostModelStats, LatencyBook

__all__ = ["CacheBook", "Cluster", "Ewma", "Host", "HostModelStats", "LatencyBook", "Lease", "normalize", "same_model"]

"""Model placement for the proxy: replication, LAN copies, smart quantization, on-demand loads.

* `service.PlacementService`: the entry points (`place`, `ensure`), used by `/api/pull` and the dispatcher;
* `replicate.Replication`: one run over several hosts, one Ollama-format feed;
* `targets`: which hosts, by free disk and memory; `quant`: which variant fits a host;
* `keeper.ReplicaKeeper`: `--min-replicas`; `jobs`: what `/api/status` shows.
"""

from olol.placement.service import PlacementService

__all__ = ["PlacementService"]

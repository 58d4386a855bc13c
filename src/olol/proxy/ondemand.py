"""Model placement wired into the proxy: the service, and on-demand loading as a dispatcher hook.

With `--pull-on-demand`, the dispatcher hands every request to
`PlacementService.ensure` before routing it: a model some healthy host has (or
a compatible variant of it) passes straight through; a model nobody has is
placed once, however many requests ask for it at the same time, and the
requests are then routed to it (or to the variant that was placed instead,
which the reply's `model` and `X-OLOL-Model` say).
"""

from __future__ import annotations

from pathlib import Path

from olol.cluster import Cluster
from olol.placement.service import PlacementService, Refresh
from olol.proxy.config import ProxyConfig
from olol.proxy.dispatch import Dispatcher
from olol.proxy.router import Router
from olol.transfer.paths import default_transfer_dir

__all__ = ["build_placement"]


def build_placement(
    config: ProxyConfig, cluster: Cluster, router: Router, dispatcher: Dispatcher, refresh: Refresh
) -> PlacementService:
    staging = Path(config.transfer_dir).expanduser() if config.transfer_dir else default_transfer_dir()
    service = PlacementService(
        cluster,
        refresh=refresh,
        staging=staging,
        lan_copy=config.lan_copy,
        quant_matcher=router.quant,
        min_replicas=config.min_replicas,
        replica_grace=config.replica_grace,
        # Deaths wake the keeper at once; the periodic check only catches what events cannot (a new model).
        check_interval=max(1.0, 5 * config.probe_interval),
    )
    if config.pull_on_demand:
        dispatcher.on_missing = service.ensure
    return service

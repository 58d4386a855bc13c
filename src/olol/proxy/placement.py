"""Where new models go: the hosts a pull (or blob upload) is sent to."""

from __future__ import annotations

from olol.cluster import Cluster, Host

__all__ = ["pull_targets"]


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

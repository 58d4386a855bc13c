"""Which (host, model) pairs may serve a request: model-aware, with quantization fallback.

Hosts that have the requested model come first. A host holding a compatible
higher-quality quant of it (q4_0 requested, q8_0 present) is added when no host
has the exact model, or when the exact model is loaded nowhere but the
compatible one is: serving it then avoids a cold load.
"""

from __future__ import annotations

from collections.abc import Iterable

from olol.cluster import Host, normalize
from olol.cluster.quant_matcher import QuantMatcher
from olol.cluster.routing import Candidate

__all__ = ["candidates"]


def candidates(model: str, hosts: Iterable[Host], quant: QuantMatcher | None) -> list[Candidate]:
    """Eligible candidates for `model` among `hosts` (the caller filters health)."""
    name = normalize(model)
    pool = list(hosts)
    exact = [Candidate(h, model) for h in pool if name in h.models]
    if quant is None or any(c.loaded for c in exact):
        return exact
    fallback: list[Candidate] = []
    for host in pool:
        match = quant.match(name, list(host.models))
        if match is not None and match != name:
            fallback.append(Candidate(host, str(host.models[match].get("name") or match), exact=False))
    if not exact:
        return fallback
    return exact + [c for c in fallback if c.loaded]

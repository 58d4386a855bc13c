"""Schemathesis against the OpenAPI description the proxy publishes (`/olol/openapi.json`).

Positive and negative cases generated from the published contract: the proxy
must never answer 5xx, and every error must match the documented error shape
(`{"error": "..."}`, OpenAI's error object under /v1).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from olol.proxy.endpoints import openapi_spec
from tests.security.fuzz_known import known_5xx
from tests.security.live_cluster import LiveCluster

pytestmark = pytest.mark.timeout(600)

schema = schemathesis.openapi.from_dict(openapi_spec())
EXAMPLES = int(os.environ.get("OLOL_FUZZ_EXAMPLES", "60"))
_cluster: LiveCluster | None = None
STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[LiveCluster]:
    global _cluster
    _cluster = LiveCluster().start()
    yield _cluster
    _cluster.stop()
    _cluster = None
    print("\nschemathesis requests by status:", dict(sorted(STATS.items())))


def test_the_spec_is_served(cluster: LiveCluster) -> None:
    import requests

    assert requests.get(cluster.url + "/olol/openapi.json", timeout=10).json() == openapi_spec()


def _json(response: object) -> object:
    try:
        return response.json()  # type: ignore[attr-defined]
    except ValueError:
        return None


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_contract(case: schemathesis.Case) -> None:
    assert _cluster is not None
    response = case.call(base_url=_cluster.url, timeout=30)
    STATS[str(response.status_code)] += 1
    if response.status_code >= 500 and (why := known_5xx(case.path, response.status_code, _json(response))):
        STATS[f"{response.status_code} known: {why}"] += 1
        return
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

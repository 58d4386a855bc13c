"""Fuzzing the proxy's HTTP API with hypothesis: no 5xx from bad input, every error in Ollama's shape.

Three kinds of input per route: random bytes, random JSON, and bodies with the
route's own field names holding values of the right kind or of any kind (so
requests also get past validation, into routing and the hosts, where a
malformed value would otherwise surface as a 500). The cluster is real: a proxy
over an agent (gRPC, protobuf conversion) and a plain Ollama simulator.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olol.proxy.api.bodies import MESSAGE_FIELDS, MESSAGES, OPTION_KINDS, Kind
from olol.proxy.endpoints import BODY_SPECS
from tests.security.fuzz_known import known_5xx
from tests.security.live_cluster import LiveCluster

pytestmark = pytest.mark.timeout(600)

# Per route and input kind. The default keeps the suite quick; OLOL_FUZZ_EXAMPLES=500 is the long run.
EXAMPLES = int(os.environ.get("OLOL_FUZZ_EXAMPLES", "60"))
STATS: Counter[str] = Counter()

small_ints = st.integers(-1000, 1000)
scalars = st.none() | st.booleans() | small_ints | st.floats(-1e6, 1e6, allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
models = st.sampled_from(["llama3.2", "llama3.2:1b-q8_0", "nomic-embed-text", "qwen3:0.6b", "nope:1b", "", "a/b/c/d"])


def _of_kind(kind: Kind) -> st.SearchStrategy[Any]:
    schema = kind.schema
    if kind is MESSAGES:
        message = st.fixed_dictionaries({}, optional={k: _of_kind(v) | json_values for k, v in MESSAGE_FIELDS.items()})
        return st.lists(message | json_values, max_size=3)
    kinds = {
        "string": st.text(max_size=30),
        "boolean": st.booleans(),
        "integer": small_ints,
        "number": st.floats(-1e3, 1e3, allow_nan=False),
        "object": st.dictionaries(st.text(max_size=8), scalars),
        "array": st.lists(scalars, max_size=4),
    }
    options = [kinds[o["type"]] for o in schema.get("oneOf", [schema]) if o.get("type") in kinds]
    return st.one_of(options) if options else json_values


option_dicts = st.dictionaries(st.sampled_from(sorted(OPTION_KINDS)) | st.text(max_size=8), json_values, max_size=4)


def _bodies(method: str, path: str, *, well_typed: bool) -> st.SearchStrategy[Any]:
    """Bodies with the route's fields: well typed (to reach routing and the hosts), or any value in any field."""
    spec = BODY_SPECS[(method, path)]
    fields = {name: models if name in ("model", "name") else _of_kind(kind) for name, kind in spec.fields.items()}
    if "options" in fields:
        fields["options"] = option_dicts
    if not well_typed:
        fields = {name: value | json_values for name, value in fields.items()}
        return st.fixed_dictionaries({}, optional=fields) | json_values
    required = {"model": models} if "model" in fields else {}
    return st.fixed_dictionaries(required, optional={k: v for k, v in fields.items() if k not in required})


@pytest.fixture(scope="module")
def cluster() -> Iterator[LiveCluster]:
    live = LiveCluster().start()
    yield live
    live.stop()
    print("\nfuzz requests by status:", dict(sorted(STATS.items())))


def _check(method: str, path: str, resp: requests.Response) -> None:
    STATS[str(resp.status_code)] += 1
    if resp.status_code >= 500:
        why = known_5xx(path, resp.status_code, resp.json())
        assert why is not None, f"{method} {path} -> {resp.status_code}: {resp.text[:300]}"
        STATS[f"{resp.status_code} known: {why}"] += 1
    if method == "HEAD":
        return
    if resp.status_code >= 400:
        body = resp.json()
        if path.startswith("/v1/"):
            assert isinstance(body["error"], dict) and isinstance(body["error"]["message"], str), body
        else:
            assert isinstance(body.get("error"), str), body  # extra fields (OLOL's "olol" details) are fine
        return
    if "ndjson" in resp.headers.get("Content-Type", ""):
        for line in resp.text.splitlines():
            item = json.loads(line)  # every line of a stream is JSON, an error line included
            assert isinstance(item, dict)


def _send(cluster: LiveCluster, method: str, path: str, data: bytes) -> None:
    resp = requests.request(
        method, cluster.url + path, data=data, timeout=30, headers={"Content-Type": "application/json"}
    )
    _check(method, path, resp)


ROUTES = sorted(BODY_SPECS)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("well_typed", [True, False], ids=["typed", "any"])
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_fuzz_shaped_bodies(cluster: LiveCluster, method: str, path: str, well_typed: bool) -> None:
    @FUZZ
    @given(body=_bodies(method, path, well_typed=well_typed))
    def run(body: Any) -> None:
        _send(cluster, method, path, json.dumps(body).encode())

    run()


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_fuzz_raw_bytes(cluster: LiveCluster, method: str, path: str) -> None:
    @FUZZ
    @given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
    def run(raw: bytes) -> None:
        _send(cluster, method, path, raw)

    run()


@FUZZ
@given(
    digest=st.text(max_size=80) | st.from_regex(r"sha256[:-][0-9a-f]{64}", fullmatch=True),
    data=st.binary(max_size=200),
    method=st.sampled_from(["HEAD", "POST"]),
)
def test_fuzz_blobs(cluster: LiveCluster, digest: str, data: bytes, method: str) -> None:
    path = "/api/blobs/" + requests.utils.quote(digest, safe="")
    if not digest or "/" in requests.utils.unquote(path[len("/api/blobs/") :]):
        return
    resp = requests.request(method, cluster.url + path, data=data, timeout=30)
    _check(method, "/api/blobs/{digest}", resp)


@FUZZ
@given(
    path=st.sampled_from(
        ["/", "/api/version", "/api/tags", "/api/ps", "/api/status", "/metrics", "/v1/models", "/olol/openapi.json"]
    )
    | st.text(max_size=30).map(lambda t: "/v1/models/" + t),
    query=st.text(max_size=20),
)
def test_fuzz_reads(cluster: LiveCluster, path: str, query: str) -> None:
    url = cluster.url + requests.utils.quote(path, safe="/") + ("?" + requests.utils.quote(query) if query else "")
    _check("GET", path, requests.get(url, timeout=30))

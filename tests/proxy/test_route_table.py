"""The proxy's route table is the one list of its endpoints: the router, the gate and the OpenAPI come from it."""

from __future__ import annotations

import aiohttp

from olol.discovery.advert import REGISTER_PATH
from olol.proxy.api.table import RouteTable, canonical
from olol.proxy.endpoints import BODY_SPECS, ROUTES, openapi_spec
from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over

FULL = "f" * 32
READ = "r" * 32


def test_scopes_bodies_and_streamed_routes_come_from_the_rows() -> None:
    policy = RouteTable(ROUTES).policy()
    assert policy.open == {"/", REGISTER_PATH}
    assert policy.read == {"/", REGISTER_PATH, "/api/version", "/api/status", "/metrics", "/olol/openapi.json"}
    assert policy.unbuffered == {"/api/blobs/{digest}"}
    assert set(policy.bodies) == set(BODY_SPECS) and len(BODY_SPECS) == 13
    assert canonical("/api/hosts/{id:.+}/drain") == "/api/hosts/{id}/drain"


def test_the_openapi_document_describes_the_rows_with_a_summary_or_a_body() -> None:
    paths = openapi_spec()["paths"]
    documented = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    rows = {(r.method, r.path) for r in ROUTES if r.body is not None or (r.method == "GET" and r.summary)}
    assert documented == rows


async def test_the_running_proxy_serves_exactly_the_table() -> None:
    keys = SecuritySettings(api_keys=ApiKeys.parse([FULL, READ + ":read"], None))
    async with proxy_over("http://127.0.0.1:9", security=keys) as proxy:
        app = proxy.runner.app
        served = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}
        rows = {(r.method, canonical(r.path)) for r in ROUTES if r.handler is not None and r.method != "HEAD"}
        assert rows <= served  # the core table, plus the rows the dashboard added
        assert {p for m, p in served - rows} == {"/ui", "/ui/", "/ui/static/{name}", "/ui/events"}
        async with aiohttp.ClientSession() as http:
            async with http.get(proxy.url + "/") as resp:  # OPEN: no key
                assert resp.status == 200
            read = {"Authorization": f"Bearer {READ}"}
            async with http.get(proxy.url + "/ui/events", headers=read, timeout=aiohttp.ClientTimeout(5)) as resp:
                assert resp.status == 200  # READ: a read-only key may follow the dashboard's feed
            async with http.get(proxy.url + "/api/tags", headers=read) as resp:
                assert resp.status == 403  # WRITE: a full key only
            async with http.get(proxy.url + "/olol/openapi.json", headers=read) as resp:
                assert await resp.json() == openapi_spec()

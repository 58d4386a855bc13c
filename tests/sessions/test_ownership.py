"""Sessions belong to the API key that created them; an admin key sees all (issue 20).

On d9d1e00 any full key listed, read and deleted every other key's sessions,
system prompts included.
"""

from __future__ import annotations

import aiohttp

from olol.security.apikeys import ApiKeys
from olol.security.settings import SecuritySettings
from tests.proxy.helpers import proxy_over
from tests.sessions.helpers import MODEL
from tests.support.ollama_sim import OllamaSim

ALICE, BOB, ADMIN = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "admin-key-0123456789abcdef"


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_sees_only_its_own_sessions_and_an_admin_key_sees_all() -> None:
    security = SecuritySettings(api_keys=ApiKeys.parse([ALICE, BOB, f"{ADMIN}:admin"]))
    async with OllamaSim() as sim, proxy_over(sim, security=security) as proxy, aiohttp.ClientSession() as http:
        url = proxy.url + "/api/sessions"

        async def status(method: str, path: str, key: str, body: object = None) -> int:
            async with http.request(method, url + path, json=body, headers=as_(key)) as r:
                await r.read()
                return r.status

        async def listed(key: str) -> set[str]:
            async with http.get(url, headers=as_(key)) as r:
                return {s["id"] for s in (await r.json())["sessions"]}

        async with http.post(url, json={"model": MODEL, "system": "alice's secret"}, headers=as_(ALICE)) as r:
            alice = (await r.json())["id"]
        async with http.post(url, json={"model": MODEL}, headers=as_(BOB)) as r:
            bob = (await r.json())["id"]

        assert await listed(ALICE) == {alice}
        assert await listed(BOB) == {bob}
        assert await listed(ADMIN) == {alice, bob}
        # Another key's session is "not found", as a missing one: not even its existence is told.
        assert await status("GET", f"/{alice}", BOB) == 404
        assert await status("POST", f"/{alice}/chat", BOB, {"message": "hi"}) == 404
        assert await status("DELETE", f"/{alice}", BOB) == 404
        assert await status("GET", f"/{alice}", ALICE) == 200
        assert await status("POST", f"/{alice}/chat", ALICE, {"message": "hi", "stream": False}) == 200
        assert await status("GET", f"/{bob}", ADMIN) == 200
        assert await status("DELETE", f"/{bob}", ADMIN) == 200
        assert await listed(ADMIN) == {alice}

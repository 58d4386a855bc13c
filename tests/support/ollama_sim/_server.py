"""`OllamaSim`: the endpoint mixins assembled into an aiohttp server one test can start,
stop and restart on the same port."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from tests.support.ollama_sim._embeddings import _EmbeddingRoutes
from tests.support.ollama_sim._errors import SimError
from tests.support.ollama_sim._generation import _GenerationRoutes
from tests.support.ollama_sim._models import _ModelRoutes
from tests.support.ollama_sim._status import _StatusRoutes
from tests.support.ollama_sim._wire import _json


class OllamaSim(_GenerationRoutes, _EmbeddingRoutes, _StatusRoutes, _ModelRoutes):
    """An Ollama server in-process (aiohttp), with knobs for the failure modes hosts have.

    Knobs are constructor arguments and plain attributes a test may change while it
    runs. Counters are attributes too; `reset_counters()` zeroes them.
    """

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("OllamaSim is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> OllamaSim:
        app = web.Application(middlewares=[self._middleware()], client_max_size=1 << 31)
        self._routes(app)
        # handler_cancellation: a client hanging up cancels its handler, as Ollama cancels
        # the request context, so the generation loop stops instead of running on.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def stop(self) -> None:
        """The host goes away: in-flight streams are cut, the port is closed."""
        if self._runner is None:
            return
        self._stopping = True
        try:
            for request in list(self._active.values()):
                if request.transport is not None:
                    request.transport.abort()
            await self._runner.cleanup()
        finally:
            self._runner = None
            self._stopping = False

    async def __aenter__(self) -> OllamaSim:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------- plumbing
    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._root)  # add_get also answers HEAD, as Ollama does
        r.add_get("/api/version", self._version)
        r.add_post("/api/generate", self._generate)
        r.add_post("/api/chat", self._chat)
        r.add_post("/api/embed", self._embed)
        r.add_post("/api/embeddings", self._embeddings)
        r.add_get("/api/tags", self._tags)
        r.add_get("/api/ps", self._ps)
        r.add_post("/api/show", self._show)
        r.add_post("/api/pull", self._pull)
        r.add_post("/api/push", self._push)
        r.add_post("/api/create", self._create)
        r.add_route("HEAD", "/api/blobs/{digest}", self._head_blob)
        r.add_post("/api/blobs/{digest}", self._post_blob)
        r.add_post("/api/copy", self._copy)
        r.add_delete("/api/delete", self._delete)

    def _middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            resource = request.match_info.route.resource
            self.requests[resource.canonical if resource is not None else request.path] += 1
            self._active[id(request)] = request
            try:
                return await handler(request)
            except SimError as e:
                return _json({"error": e.message}, e.status)
            except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
                # gin without HandleMethodNotAllowed: a wrong method is a plain 404 too.
                return web.Response(status=404, text="404 page not found")
            finally:
                self._active.pop(id(request), None)

        return middleware

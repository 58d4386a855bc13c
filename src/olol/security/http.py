"""The proxy's HTTP gate: API keys, rate limits, body limits and body checks, as aiohttp middleware.

Installed by `install_guards(app, settings, on_error=...)` as one middleware
of three nested layers: the outer gives every refusal aiohttp itself raises
(unknown route, wrong method, oversized body) Ollama's `{"error": ...}` shape;
the middle one is the app's own error reply (`on_error`); the inner one runs
before any handler, in the order that spends the least on a request that is
going to be refused (who is asking, how often, then what they sent). One
middleware rather than three: each aiohttp middleware layer is another
coroutine and partial per request, a measurable share of the proxy's CPU.

What each route allows (open, read-only keys, a body and its check) is the app's
to say: it hands the gate a `RoutePolicy` made from its route table
(`olol.proxy.api`), so this module knows no endpoint of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import mmap
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from olol.security.apikeys import READ, ApiKey
from olol.security.cors import CorsPolicy
from olol.security.limits import BodyBudget, RateLimiter, trim_heap
from olol.security.settings import SecuritySettings
from olol.security.tokens import is_loopback
from olol.wire.errors import error_body

__all__ = [
    "API_KEY",
    "PARSED_BODY",
    "RAW_BODY",
    "ErrorReply",
    "InvalidBody",
    "RoutePolicy",
    "error_response",
    "https_context",
    "install_guards",
    "route_pattern",
    "scheme",
    "warn_if_open_http",
]

log = logging.getLogger("olol.security")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The app's reply to an exception a handler raised (anything but aiohttp's own replies and a reset client).
ErrorReply = Callable[[web.Request, Exception], web.StreamResponse]



class InvalidBody(ValueError):
    """A body the app refuses before any handler; the message is what the client sees, with Ollama's status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RoutePolicy:
    """What the gate needs to know of the app's routes (patterns as aiohttp's: `/api/blobs/{digest}`)."""

    #: Answered without a key (GET, HEAD, POST).
    open: frozenset[str] = frozenset()
    #: What a read-only key may GET (open routes included).
    read: frozenset[str] = frozenset()
    #: Streamed to their handler, never buffered: no JSON size limit, no body timeout.
    unbuffered: frozenset[str] = frozenset()
    #: (method, pattern) -> the spec `parse` checks that route's body against.
    bodies: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    #: `parse(raw, spec or None, reject_unknown=...)`: the decoded body (None: empty), or `InvalidBody`.
    parse: Callable[..., Any] = field(default=lambda raw, _spec, **_: json.loads(raw) if raw.strip() else None)


def _request_key(name: str) -> Any:
    # Typed request keys are recent (aiohttp 3.13); older versions take the plain name, without a warning.
    key_type = getattr(web, "RequestKey", None)
    return key_type(name, object) if key_type is not None else name


#: Key of the request's decoded JSON body, set by the guard once it checked it (absent for an empty body).
PARSED_BODY: Any = _request_key("olol_parsed_body")
#: Key of the bytes that body was decoded from, kept for small bodies only (a handler may send them on
#: unchanged, see `olol.wire.raw`); a large body's bytes are dropped once decoded.
RAW_BODY: Any = _request_key("olol_raw_body")
#: Key of the `ApiKey` the request came with (absent when keys are off or the path is open).
API_KEY: Any = _request_key("olol_api_key")
#: Key of the bytes a request holds of the body budget (absent when none).
_BODY_CHARGE: Any = _request_key("olol_body_charge")
#: After a body this large the heap is trimmed (see `trim_heap`); smaller ones are not worth the call.
_TRIM_AFTER = 8 << 20
_TRIM_DELAY = 0.5
#: A body this large (or larger) is read into one mapping of its declared size and dropped once decoded:
#: aiohttp's `read()` would grow a bytearray and copy it into bytes (twice its size at once), and
#: keep those bytes for as long as the request lives, beside the decoded object.
_LARGE_BODY = 1 << 20


def route_pattern(request: web.Request) -> str:
    """The route a request matched (`/api/blobs/{digest}`), or its path when it matched none."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def error_response(
    request: web.Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error as Ollama sends it, or as OpenAI does under /v1."""
    if request.path.startswith("/v1/"):
        body: object = error_body(status, message)
    else:
        body = {"error": message}
    # The header as a plain header: aiohttp's `content_type=` parses and rebuilds it on every reply.
    return web.Response(status=status, body=json.dumps(body).encode(), headers={**_JSON, **(headers or {})})


_JSON = {"Content-Type": "application/json"}


class _Refused(Exception):
    """The gate's refusal of a request: answered by the gate itself, in Ollama's shape.

    Not an `HTTPException`: building one (its text body, its headers) cost about as much as
    checking the body it refuses, a cost a client sending bad requests back to back multiplies.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _shaped(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own plain-text refusal (unknown route, wrong method, too large) in Ollama's shape."""
    message = "404 page not found" if exc.status == 404 else (exc.reason or "error").lower()
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    return error_response(request, exc.status, message, headers)


def _make_gate(settings: SecuritySettings, policy: RoutePolicy, on_error: ErrorReply | None) -> Middleware:
    keys = settings.api_keys
    open_paths, read_paths, unbuffered, bodies, parse_body = (
        policy.open, policy.read, policy.unbuffered, policy.bodies, policy.parse
    )
    limits = settings.limits
    cors = CorsPolicy.of(settings.origins)
    limiter = RateLimiter(limits.rate, limits.burst) if limits.rate else None
    # Failed authentications per client address: past the burst, refused before the key is even checked.
    failures = RateLimiter(limits.auth_failure_rate, limits.auth_failure_burst)
    budget = BodyBudget(max(limits.body_budget, limits.max_body))
    trim_pending = False

    def forget_body(request: web.Request) -> None:
        # aiohttp keeps a keep-alive connection's last request alive until the next one arrives (up to
        # the keep-alive timeout), and with it the body's bytes and its decoded copy: drop both now.
        request.pop(PARSED_BODY, None)
        request.pop(RAW_BODY, None)
        if isinstance(getattr(request, "_read_bytes", None), bytes):
            request._read_bytes = None  # aiohttp's cache of read(); nobody reads the body after its handler

    def trim_soon() -> None:
        # Later, not now: the request (and aiohttp's copy of its body) lives until its reply is written.
        nonlocal trim_pending

        def trim() -> None:
            nonlocal trim_pending
            trim_pending = False
            trim_heap()

        if not trim_pending:
            trim_pending = True
            asyncio.get_running_loop().call_later(_TRIM_DELAY, trim)

    def authenticate(request: web.Request, pattern: str) -> ApiKey | None:
        if not keys.enabled or (pattern in open_paths and request.method in ("GET", "HEAD", "POST")):
            return None
        address = request.remote or ""
        if wait := failures.blocked(address):
            raise _Refused(
                429,
                "too many failed authentications, please retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        key = keys.from_header(request.headers.get("Authorization"))
        if key is None:
            failures.acquire(address)
            raise _Refused(
                401,
                "unauthorized: a valid API key is required (Authorization: Bearer KEY)",
                {"WWW-Authenticate": 'Bearer realm="olol"'},
            )
        if key.scope == READ and not (pattern in read_paths and request.method in ("GET", "HEAD")):
            raise _Refused(403, "forbidden: this API key is read-only (status and metrics)")
        return key

    async def read_body(request: web.Request, pattern: str) -> web.Request:
        spec = bodies.get((request.method, pattern))
        if spec is None and request.method in ("GET", "HEAD", "OPTIONS"):
            return request
        length = request.content_length
        if length is not None and length > limits.max_body:
            raise _Refused(413, f"request body too large (limit {limits.max_body} bytes)")
        # The parser never reads past a Content-Length it has accepted, so the size limit only needs a
        # clone (aiohttp's per-request `client_max_size`) for chunked bodies and the exact-limit edge.
        limited = request if length is not None and length < limits.max_body else (
            request.clone(client_max_size=limits.max_body))
        # A body of unknown length is charged the most it may be until it is read.
        charge = length if length is not None else limits.max_body
        if not budget.take(charge):
            raise _Refused(503, "server busy: too many large request bodies in flight, please retry later",
                           {"Retry-After": "1"})
        large = spec is not None and length is not None and length >= _LARGE_BODY
        try:
            # A route with a spec is read through `PARSED_BODY` (and `RAW_BODY`) only, so a large body
            # need not stay in aiohttp's cache; other routes' handlers may read the bytes themselves.
            raw: bytes | mmap.mmap = await (read_large(limited, length) if large and length else read_raw(limited))
            if length is None:
                budget.give(charge - len(raw))
                charge = len(raw)
            try:
                body = parse_body(raw, spec, reject_unknown=limits.reject_unknown_fields)
            except InvalidBody as exc:
                raise _Refused(exc.status, str(exc)) from None
            finally:
                if isinstance(raw, mmap.mmap):
                    raw.close()  # the parser consumed it; what pages it kept go back now
        except BaseException:
            budget.give(charge)  # refused: the gate never sees this request's charge
            raise
        limited[_BODY_CHARGE] = charge  # given back by the gate once the handler is done
        if body is not None:
            limited[PARSED_BODY] = body  # handlers take it from here instead of decoding the JSON again
            if not large:
                limited[RAW_BODY] = raw
        return limited

    async def read_large(limited: web.Request, length: int) -> mmap.mmap:
        """The body, read into one anonymous mapping of its declared length (the budget charged that much).

        A mapping rather than a bytearray: the body's parser gives back each page it has decoded
        (`olol.proxy.api.large_body`), so the bytes and what they decode to are not both resident.
        """
        buffer = mmap.mmap(-1, length)
        filled = 0
        try:
            async with asyncio.timeout(limits.body_timeout):
                with memoryview(buffer) as view:
                    while filled < length:
                        chunk = await limited.content.readany()
                        if not chunk:
                            break
                        view[filled : filled + len(chunk)] = chunk  # never past `length`: aiohttp stops there
                        filled += len(chunk)
            if filled < length:
                raise _Refused(400, "request body shorter than its Content-Length")
        except TimeoutError:
            buffer.close()
            raise _Refused(408, f"request body not received within {limits.body_timeout:g}s") from None
        except BaseException:
            buffer.close()
            raise
        return buffer

    async def read_raw(limited: web.Request) -> bytes:
        try:
            if limited.content.is_eof():
                raw = await limited.read()  # already buffered (the usual small JSON body): no timer needed
            else:
                async with asyncio.timeout(limits.body_timeout):
                    raw = await limited.read()  # cached: the handler's own read() returns these bytes
        except TimeoutError:
            raise _Refused(408, f"request body not received within {limits.body_timeout:g}s") from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, f"request body too large (limit {limits.max_body} bytes)") from None
        return raw

    def cross_origin(request: web.Request) -> None:
        """gin-contrib/cors's order, as Ollama has it: a foreign origin is an empty 403, a preflight a 204."""
        origin = request.headers.get("Origin")
        if not origin or origin in (f"http://{request.host}", f"https://{request.host}"):
            return  # not a CORS request (every non-browser client), or same-origin
        if not cors.allows(origin):
            raise web.HTTPForbidden(text="")
        if request.method == "OPTIONS":
            raise web.HTTPNoContent(headers=cors.preflight_headers(origin))

    async def guard(request: web.Request) -> web.Request:
        """The request the handler gets (a clone when the body limit needs one), or a refusal raised."""
        cross_origin(request)  # before the API key: browsers send no credentials with a preflight
        pattern = route_pattern(request)
        key = authenticate(request, pattern)
        if limiter is not None and pattern not in open_paths:
            identity = f"key:{key.name}" if key else f"addr:{request.remote}"
            wait = limiter.acquire(identity)
            if wait:
                raise _Refused(
                    429,
                    "rate limit exceeded, please retry later",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
        if key is not None:
            request[API_KEY] = key  # a clone made for the body limit copies it
        if pattern not in unbuffered and request.method not in ("GET", "HEAD"):
            request = await read_body(request, pattern)
        return request

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:  # outer layer: aiohttp's refusals in Ollama's shape
            try:  # middle layer: the app's error replies (they see the request as it came, not the clone)
                guarded = await guard(request)  # inner layer: the guard, then the handler
                try:
                    return await handler(guarded)
                finally:
                    if charge := guarded.get(_BODY_CHARGE):
                        budget.give(charge)
                        if charge >= _TRIM_AFTER:
                            forget_body(guarded)
                            trim_soon()
            except _Refused as refused:
                return error_response(request, refused.status, refused.message, refused.headers)
            except (web.HTTPException, ConnectionResetError):
                raise  # aiohttp's own replies, and a client that is gone
            except Exception as exc:
                if on_error is None:
                    raise
                return on_error(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json" or not exc.body:
                raise
            return _shaped(request, exc)

    return gate


def _allow_origin(cors: CorsPolicy) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Adds `Access-Control-Allow-Origin` to every reply to an allowed origin, streams included."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin and cors.allows(origin) and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = cors.allow_origin(origin)
            response.headers.add("Vary", "Origin")

    return on_prepare


def install_guards(
    app: web.Application, settings: SecuritySettings, policy: RoutePolicy, *, on_error: ErrorReply | None = None
) -> None:
    """Put the gate first among the app's middlewares (call before the app starts, while it can still change).

    `policy` says what each route allows. `on_error` answers what a handler (or the guard) raised, inside
    the gate's shaping of aiohttp's refusals, exactly where an error middleware of the app's own would sit;
    it is called from the `except` block, so it may log the exception with its traceback.
    """
    app.middlewares.insert(0, _make_gate(settings, policy, on_error))
    app.on_response_prepare.append(_allow_origin(CorsPolicy.of(settings.origins)))
    if settings.api_keys.enabled:
        log.info("proxy HTTP API: %d API key(s) required", len(settings.api_keys))


def warn_if_open_http(logger: logging.Logger, host: str, port: int, settings: SecuritySettings) -> None:
    """No API keys is the default (a trusted machine), but never silently on an address others reach."""
    if not settings.api_keys.enabled and not is_loopback(host):
        logger.warning(
            "no API keys: anyone who can reach %s:%d can use this proxy's HTTP API "
            "(set --api-key, $OLOL_API_KEYS or --api-keys-file)",
            host,
            port,
        )


def https_context(settings: SecuritySettings) -> ssl.SSLContext | None:
    """The proxy's HTTPS context: its TLS certificate, unless HTTPS is turned off; None serves plain HTTP."""
    if not settings.https:
        return None
    return settings.tls.server_ssl_context(require_client_cert=settings.https_client_auth)


def scheme(settings: SecuritySettings) -> str:
    return "https" if settings.https and settings.tls.has_identity else "http"

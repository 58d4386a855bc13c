"""Model management fanned out to the hosts concerned: pull, push, create, copy, delete, blobs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

from aiohttp import web

from olol.cluster import Host
from olol.cluster.backend import JSON, Backend
from olol.cluster.fanout import FanOut, as_olol_error, fan_out
from olol.errors import BadRequest, ModelNotFound, OlolError, Unsupported
from olol.placement.progress import DONE, ProgressMerger, fan_in
from olol.placement.targets import pull_targets
from olol.proxy.api.bodies import valid_digest
from olol.proxy.http.io import ctx, json_reply, read_json, require_model, wants_stream, write_ndjson

__all__ = ["blob_exists", "blob_upload", "copy", "create", "delete", "pull", "push"]

REPLICAS_HEADER = "X-OLOL-Replicas"
_CHUNK = 1 << 20

StreamOp = Callable[[Backend], AsyncIterator[JSON]]


#: On a host's failure line of a merged feed (`olol.code`): the HTTP status that host answered with.
FAILURE_CODE = "code"


def failure_status(statuses: Iterable[int]) -> int:
    """The one HTTP status for a request every host concerned failed, from each host's own status.

    A host's 4xx is its verdict on the request itself (an invalid name, a bad digest): the
    client must fix the request, so it wins over hosts that broke (5xx), which say nothing
    about it. Hosts that agree are passed through; 4xx that disagree give the most common
    (the lowest on a tie, for a stable answer); 5xx that disagree are a 502 (the hosts failed).
    """
    codes = [s for s in statuses if 400 <= s < 600]
    client = Counter(s for s in codes if s < 500)
    if client:
        return min(client, key=lambda s: (-client[s], s))
    if not codes:
        return 500
    return codes[0] if len(set(codes)) == 1 else 502


def _raise_if_none_succeeded(result: FanOut[Any]) -> None:
    """`FanOut.raise_if_none_succeeded`, with the status all the failures point to (not the first host's)."""
    try:
        result.raise_if_none_succeeded()
    except OlolError as exc:
        exc.status = failure_status(e.status for e in result.failed.values())
        raise


def host_failed(merger: ProgressMerger, host_id: str, exc: BaseException) -> list[JSON]:
    """The feed lines for a host's failure; its line carries the host's status (`olol.code`),
    which is what a `stream: false` reply is answered with when every host fails."""
    error = as_olol_error(exc)
    lines = merger.fail(host_id, error.message)
    lines[0]["olol"][FAILURE_CODE] = error.status
    return lines


def _failure_codes(line: JSON, codes: dict[str, int], skipped: set[str]) -> None:
    olol = line.get("olol")
    if isinstance(olol, dict) and "error" in olol and isinstance(olol.get(FAILURE_CODE), int):
        codes[str(olol.get("host"))] = olol[FAILURE_CODE]
    elif isinstance(olol, dict) and "skipped" in olol:
        skipped.add(str(olol.get("host")))


async def _merged_feed(hosts: Sequence[Host], op: StreamOp,
                       before_final: Callable[[], Awaitable[None]] | None = None) -> AsyncGenerator[JSON, None]:
    """Run a status stream on each host at once and yield one merged feed, ending with the final line
    (`before_final` is awaited just before it)."""
    merger = ProgressMerger([h.id for h in hosts])
    feeds = [(h.id, partial(op, h.backend)) for h in hosts]
    async with contextlib.aclosing(fan_in(feeds)) as items:
        async for host_id, item in items:
            if item is DONE:
                if host_id not in merger.succeeded and host_id not in merger.failed \
                        and host_id not in merger.skipped:
                    for line in merger.fail(host_id, "stream ended before success"):
                        yield line
            elif isinstance(item, Unsupported):
                for line in merger.skip(host_id, item.message):
                    yield line
            elif isinstance(item, BaseException):
                for line in host_failed(merger, host_id, item):
                    yield line
            elif isinstance(item, dict):
                for line in merger.feed(host_id, item):
                    yield line
    if before_final is not None:
        await before_final()
    yield merger.final()


async def _reply_feed(request: web.Request, body: JSON, feed: AsyncGenerator[JSON, None],
                      headers: dict[str, str]) -> web.StreamResponse:
    """Stream the merged feed, or with `stream: false` answer its final line.

    An error then gets the status the hosts' failure lines point to (`failure_status`):
    a 400 from every host stays a 400, as from Ollama, instead of becoming a 500.
    """
    try:
        if wants_stream(body):
            return await write_ndjson(request, feed, headers)
        last: JSON = {}
        codes: dict[str, int] = {}
        skipped: set[str] = set()
        async for line in feed:
            last = line
            _failure_codes(line, codes, skipped)
        hider = ctx(request).hider
        if hider is not None:
            last = hider.json(last)
        if "error" not in last:
            return json_reply(last, headers=headers)
        # Ollama's error body is exactly {"error": ...}; the per-host report moves to a header.
        if "olol" in last:
            headers = {**headers, "X-OLOL-Report": json.dumps(last["olol"], separators=(",", ":"))}
        message = str(last["error"])
        # Only hosts that cannot do this at all (llama.cpp cannot pull or create): 501, as for copy.
        status = failure_status(codes.values()) if codes or not skipped else Unsupported.status
        # A model no registry has is the client's mistake (404, like a missing model), not a server fault:
        # Ollama reports it in-stream, so the hosts' status says 500.
        if status >= 500 and "file does not exist" in message and "failed on every host" in message:
            status = 404
        return json_reply({"error": message}, status=status, headers=headers)
    finally:
        await feed.aclose()


def _replicas(request: web.Request) -> int | None:
    raw = request.headers.get(REPLICAS_HEADER)
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise BadRequest(f"{REPLICAS_HEADER} must be an integer") from None
    return ctx(request).config.replicas


async def _feed_from(request: web.Request, body: JSON, hosts: Sequence[Host], op: StreamOp,
                     what: str) -> web.StreamResponse:
    """Run a status stream on `hosts` and reply with the merged feed, re-reading their models first.

    Before the final line, not after the reply: a client acts on "success" at once (ollama-js stops
    reading there, before the end of the body), and must then find the model it created or pulled.
    """
    if not hosts:
        raise OlolError(f"no healthy host to {what}", status=503)
    ids = [h.id for h in hosts]
    refreshed = False

    async def refresh() -> None:
        nonlocal refreshed
        refreshed = True
        await ctx(request).refresh(ids)

    try:
        return await _reply_feed(request, body, _merged_feed(hosts, op, refresh), {"X-OLOL-Host": ",".join(ids)})
    finally:
        if not refreshed:  # the feed stopped early (the client left): the hosts may have changed all the same
            await ctx(request).refresh(ids)


async def pull(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    hosts = pull_targets(ctx(request).cluster, require_model(body), _replicas(request))
    return await _feed_from(request, body, hosts, lambda b: b.pull(body), "pull to")


async def push(request: web.Request) -> web.StreamResponse:
    """Pushed from one host that has the model: the registry needs it once."""
    body = await read_json(request)
    model = require_model(body)
    hosts = ctx(request).cluster.hosts_with(model)
    if not hosts:
        raise ModelNotFound(model)
    return await _feed_from(request, body, hosts[:1], lambda b: b.push(body), "push from")


async def _create_targets(request: web.Request, body: JSON) -> list[Host]:
    """Hosts holding every referenced blob, else those with the base model, else the pull placement."""
    cluster = ctx(request).cluster
    digests = [str(d) for d in (body.get("files") or {}).values()] + \
        [str(d) for d in (body.get("adapters") or {}).values()]
    if digests:

        async def has_all(host: Host) -> bool:
            return all(await asyncio.gather(*(host.backend.has_blob(d) for d in digests)))

        found = await fan_out(cluster.healthy_hosts(), has_all)
        hosts = [h for h in cluster.healthy_hosts() if found.ok.get(h.id)]
        if hosts:
            return hosts
    base = body.get("from")
    if isinstance(base, str) and base:
        hosts = cluster.hosts_with(base)
        if hosts:
            return hosts
    return pull_targets(cluster, require_model(body), _replicas(request))


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    require_model(body)
    hosts = await _create_targets(request, body)
    return await _feed_from(request, body, hosts, lambda b: b.create(body), "create the model on")


async def _on_hosts_with(request: web.Request, model: str, op: Callable[[Host], Awaitable[None]]) -> web.Response:
    """Copy/delete on every host that has `model`; 404 if none does, the first error if all fail."""
    hosts = ctx(request).cluster.hosts_with(model)
    if not hosts:
        raise ModelNotFound(model)
    result = await fan_out(hosts, op)
    await ctx(request).refresh(result.ok)
    _raise_if_none_succeeded(result)
    if not result.ok:  # every host concerned is one that cannot manage models: an error, never a silent 200
        raise Unsupported("no host could do this: " + "; ".join(f"{h}: {m}" for h, m in result.skipped.items()))
    return _status_reply(result.failed, result.report(), result.headers())


async def copy(request: web.Request) -> web.Response:
    body = await read_json(request)
    source = require_model(body, "source")
    destination = require_model(body, "destination")
    return await _on_hosts_with(request, source, lambda h: h.backend.copy(source, destination))


async def delete(request: web.Request) -> web.Response:
    body = await read_json(request)
    model = require_model(body)
    return await _on_hosts_with(request, model, lambda h: h.backend.delete(model))


def _status_reply(failed: dict[str, OlolError], report: JSON, headers: dict[str, str],
                  status: int = 200) -> web.Response:
    """Ollama answers copy/delete/blob with an empty body; a partial failure adds a report and a header."""
    if failed:
        return json_reply({"olol": report}, status=status, headers=headers)
    return web.Response(status=status)


def _digest(request: web.Request) -> str:
    """The blob's digest, checked before anything is read or forwarded: it becomes a path on every host."""
    digest = request.match_info["digest"]
    if not valid_digest(digest):
        raise BadRequest("invalid digest format")
    return digest


async def blob_exists(request: web.Request) -> web.Response:
    digest = _digest(request)

    async def has(host: Host) -> bool:
        return await host.backend.has_blob(digest)

    found = await fan_out(ctx(request).cluster.healthy_hosts(), has)
    return web.Response(status=200 if any(found.ok.values()) else 404)


def _too_large(limit: int) -> OlolError:
    return OlolError(f"blob too large (limit {limit} bytes)", status=413)


async def _spool(request: web.Request, digest: str) -> str:
    """Body to a temporary file, checking its sha256 against the digest as Ollama does.

    Bounded by the blob size limit (announced or counted) and by an idle timeout: a client that
    stops sending holds neither a connection nor a half-written file for long.
    """
    limits = ctx(request).config.security.limits
    if request.content_length is not None and request.content_length > limits.max_blob:
        raise _too_large(limits.max_blob)
    sha = hashlib.sha256()
    fd, path = tempfile.mkstemp(prefix="olol-blob-")
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    async with asyncio.timeout(limits.blob_idle_timeout):
                        chunk = await request.content.read(_CHUNK)
                except TimeoutError:
                    raise OlolError(
                        f"blob upload idle for {limits.blob_idle_timeout:g}s", status=408
                    ) from None
                if not chunk:
                    break
                received += len(chunk)
                if received > limits.max_blob:
                    raise _too_large(limits.max_blob)
                sha.update(chunk)
                await asyncio.to_thread(out.write, chunk)
        actual = "sha256:" + sha.hexdigest()
        if actual != digest.replace("-", ":", 1):
            raise BadRequest(f"digest mismatch, expected {digest}, got {actual}")
    except BaseException:
        os.unlink(path)
        raise
    return path


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    with open(path, "rb") as src:
        while chunk := await asyncio.to_thread(src.read, _CHUNK):
            yield chunk


async def blob_upload(request: web.Request) -> web.Response:
    """Uploaded once by the client, stored on every host a pull would go to (a create can follow anywhere)."""
    digest = _digest(request)
    path = await _spool(request, digest)
    try:
        hosts = pull_targets(ctx(request).cluster, "", _replicas(request))
        if not hosts:
            raise OlolError("no healthy host to store the blob on", status=503)
        result = await fan_out(hosts, lambda h: h.backend.push_blob(digest, _file_chunks(path)))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    _raise_if_none_succeeded(result)
    if not result.ok:
        raise Unsupported("no host has a blob store")
    return _status_reply(result.failed, result.report(), result.headers(), status=201)


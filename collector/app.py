"""The Quart-Trio app: maps HTTP and WebSocket endpoints onto messages to the supervisor.

Handlers hold no state of their own: they validate input, ask the supervisor, and render the answer.
Every error is a JSON body `{"error": <problem>, "field": <field>}` with a 4xx status.
"""

from __future__ import annotations

import hmac
import json
import math
from pathlib import Path
from typing import Any

import trio
from quart import Response, g, request, send_file, websocket
from quart_trio import QuartTrio
from quart_trio.wrappers.response import TrioFileBody
from werkzeug.exceptions import HTTPException

from actors.events import TERMINAL, JobEvent, not_found
from actors.messages import (
    CancelJob,
    DeleteCamera,
    GetEvents,
    GetJob,
    ListCameras,
    ListJobs,
    PurgeJob,
    PutCamera,
    StartJob,
    SubscribeJob,
    ask,
    queued,
)
from actors.supervisor import Supervisor
from collector.config import Settings
from collector.errors import NotFound, RangeNotSatisfiable, RequestError
from collector.inflight import InFlight
from collector.metrics import Metrics
from collector.numbers import ascii_int
from collector.openapi import document
from collector.params import parse_camera, parse_collect
from collector.ranges import Unsatisfiable, byte_range, range_applies

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
WS_CLOSE_NORMAL, WS_CLOSE_GOING_AWAY, WS_CLOSE_POLICY = 1000, 1001, 1008


def create_app(supervisor: Supervisor, settings: Settings, draining: trio.Event,
               in_flight: InFlight | None = None) -> QuartTrio:
    app = QuartTrio(__name__)
    if in_flight is not None:  # counts the HTTP requests being answered (collector/inflight.py)
        app.asgi_app = in_flight.wrap(app.asgi_app)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    sup = supervisor.inbox

    @app.errorhandler(RequestError)
    async def request_error(exc: RequestError) -> tuple[dict[str, str], int, dict[str, str]]:
        return exc.as_json(), exc.status, exc.headers()

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[dict[str, str], int]:
        code = exc.code or 500
        field = "body" if code == 413 else "path" if code < 500 else "server"
        return {"error": (exc.description or exc.name).rstrip("."), "field": field}, code

    @app.before_request
    async def check_token_http() -> tuple[dict[str, str], int] | None:
        # Read the (size-limited) body before any early answer, so a keep-alive connection is
        # never left with unread body bytes when a request is refused. Kept for the handler:
        # awaiting the body again costs a scheduler pass even once it is complete.
        g.body = await request.get_data()
        if request.path in _PUBLIC or _authorized(settings, request.headers, request.args):
            return None
        return _UNAUTHORIZED, 401

    @app.before_websocket
    async def check_token_ws() -> tuple[dict[str, str], int] | None:
        if _authorized(settings, websocket.headers, websocket.args):
            return None
        return _UNAUTHORIZED, 401

    metrics = Metrics(supervisor.statistics, settings.data_dir)

    @app.before_serving
    async def start_metrics() -> None:
        metrics.start(app.nursery)  # the loop-lag probe, in quart-trio's lifespan nursery

    @app.after_serving
    async def stop_metrics() -> None:
        metrics.stop()

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @app.get("/")
    async def health() -> dict[str, str]:
        return {"message": "Camera Collector API is running!"}

    @app.post("/collect")
    async def collect() -> dict[str, Any]:
        params = parse_collect(await _json_body(), settings, supervisor.cameras)
        view = await ask(sup, lambda reply: StartJob(request=params, reply=reply))
        job_id = view["job_id"]
        return {"job_id": job_id, "message": f"Collection started with Job ID {job_id}"}

    @app.get("/jobs")
    async def list_jobs() -> dict[str, Any]:
        status = request.args.get("status")
        if status is not None and status not in JOB_STATUSES:
            raise RequestError("status", f"must be one of {', '.join(JOB_STATUSES)}")
        limit = ascii_int(request.args.get("limit", "100"))
        if limit is None or not 1 <= limit <= 1000:
            raise RequestError("limit", "must be an integer from 1 to 1000")
        before = request.args.get("before")
        since, until = _time_arg("since"), _time_arg("until")
        if since is not None and until is not None and since > until:
            raise RequestError("since", "must not be after until")
        return await ask(
            sup,
            lambda r: ListJobs(
                status=status, since=since, until=until, limit=limit, before=before,
                reply=r,
            ),
        )

    @app.get("/jobs/<job_id>/events")
    async def job_events_log(job_id: str) -> dict[str, Any]:
        return {"events": await ask(sup, lambda reply: GetEvents(job_id=job_id, reply=reply))}

    @app.get("/jobs/<job_id>/sources/<source>/segments/<index>")
    async def download_segment(job_id: str, source: str, index: str) -> Response:
        # plain converters: quart-schema mis-renders a path with several <int:...> parts
        source_i, index_i = ascii_int(source), ascii_int(index)
        if source_i is None or index_i is None:
            raise NotFound("index", "source and segment are numbers")
        view = await ask(sup, lambda reply: GetJob(job_id=job_id, reply=reply))
        sources = view["sources"]
        if not 0 <= source_i < len(sources):
            raise NotFound("source", "no such source in this job")
        segment = next((s for s in sources[source_i]["segments"] if s["index"] == index_i), None)
        if segment is None:
            raise NotFound("index", "no such segment")
        path = await trio.to_thread.run_sync(_servable_file, segment["path"], settings.data_dir)
        if path is None:
            raise NotFound("index", "segment file is gone")
        response = await send_file(
            path, mimetype=_MIME.get(path.suffix, "application/octet-stream"),
            as_attachment=True, attachment_filename=f"{job_id}-{source_i}-{path.name}",
        )
        await _apply_range(response)
        # Quart marks a file public for 12 h: no shared cache may keep a recording, and with the
        # API token the answer is for the token's holder only
        response.headers["Cache-Control"] = "no-store"
        response.headers.pop("Expires", None)
        # No cap on the whole download (Quart's RESPONSE_TIMEOUT, 60 s, would cut a long segment
        # to a slow client): a client that takes nothing is dropped after send_timeout_s instead
        response.timeout = None
        return response

    @app.get("/cameras")
    async def list_cameras() -> dict[str, Any]:
        return {"cameras": await ask(sup, lambda reply: ListCameras(reply=reply))}

    @app.post("/cameras")
    async def add_camera() -> tuple[dict[str, Any], int]:
        spec = parse_camera(await _json_body(), settings)
        view = await ask(
            sup, lambda r: PutCamera(name=spec.name, url=spec.url, options=spec.options, reply=r)
        )
        return view, 201

    @app.delete("/cameras/<name>")
    async def delete_camera(name: str) -> dict[str, Any]:
        return await ask(sup, lambda reply: DeleteCamera(name=name, reply=reply))

    @app.get("/jobs/<job_id>")
    async def get_job(job_id: str) -> dict[str, Any]:
        return await ask(sup, lambda reply: GetJob(job_id=job_id, reply=reply))

    @app.delete("/jobs/<job_id>")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        if request.args.get("purge") in ("1", "true"):
            return await ask(sup, lambda reply: PurgeJob(job_id=job_id, reply=reply))
        return await ask(sup, lambda reply: CancelJob(job_id=job_id, reply=reply))

    @app.websocket("/ws/<job_id>")
    async def job_events(job_id: str) -> None:
        as_json = websocket.args.get("format") == "json"

        async def send(event: JobEvent) -> None:
            if as_json:
                await websocket.send(json.dumps(event.as_json()))
            elif event.text is not None:
                await websocket.send(event.text)

        try:
            receive = await ask(sup, lambda reply: SubscribeJob(job_id=job_id, reply=reply))
        except NotFound:
            await send(not_found(job_id))
            await websocket.close(WS_CLOSE_NORMAL)
            return
        last: JobEvent | None = None
        with receive:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when, draining, nursery.cancel_scope)
                nursery.start_soon(_drop_incoming)
                async for first in receive:
                    # Each message costs scheduler passes (the channel's checkpoint, hypercorn's
                    # send lock, the socket's send), and the segments of one server's cameras
                    # close together: what queued behind `first` goes out without the channel's
                    # checkpoint. (Counting a burst as in flight, so that read rounds make way
                    # for it, was tried: its gain and its CPU cost were within the noise.)
                    for event in (first, *queued(receive)):
                        await send(event)
                        last = event
                nursery.cancel_scope.cancel()
        if draining.is_set():
            await websocket.close(WS_CLOSE_GOING_AWAY, "server shutting down")
        elif last is not None and last.type == "interrupted":  # a replay, after a restart
            await websocket.close(WS_CLOSE_NORMAL, "interrupted: the collector stopped while the "
                                  "job was running")
        elif last is not None and last.type in TERMINAL:
            await websocket.close(WS_CLOSE_NORMAL)
        else:
            await websocket.close(WS_CLOSE_POLICY, "subscriber too slow; reconnect to resume")

    @app.after_request
    async def no_cache(response: Response) -> Response:
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    document(app)
    return app


_PUBLIC = frozenset({"/", "/openapi.json", "/docs"})  # need no token
_MIME = {".mp4": "video/mp4", ".mkv": "video/x-matroska", ".ts": "video/mp2t"}


async def _apply_range(response: Response) -> None:
    """Answer a Range request for one byte range with 206 (see collector/ranges.py; not Quart's
    `conditional=True`, which answers some ranges with a 500)."""
    size = response.content_length or 0
    response.headers["Accept-Ranges"] = "bytes"
    if not range_applies(request.headers.get("If-Range"), response.headers.get("ETag"),
                         response.headers.get("Last-Modified")):
        return
    try:
        wanted = byte_range(request.headers.get("Range"), size)
    except Unsatisfiable:
        raise RangeNotSatisfiable(size) from None
    if wanted is None:
        return
    body = response.response
    assert isinstance(body, TrioFileBody)  # send_file of a path
    await body.make_conditional(wanted.start, wanted.stop)
    response.status_code = 206
    response.content_length = wanted.stop - wanted.start
    response.headers["Content-Range"] = wanted.content_range(size)


def _servable_file(segment_path: str, data_dir: Path) -> Path | None:
    """The segment's file, resolved, if it is a file inside `data_dir` (blocking: file system)."""
    path = Path(segment_path).resolve()
    if not path.is_relative_to(Path(data_dir).resolve()) or not path.is_file():
        return None
    return path


async def _json_body() -> Any:
    """The request's JSON body (read by `check_token_http`), None when there is none."""
    raw = g.body
    if not raw.strip():
        return None
    try:
        # UTF-8 only (RFC 8259): json.loads would take UTF-16 and -32 bytes too
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("body", f"not valid JSON: not UTF-8 ({exc.reason})") from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise RequestError("body", f"not valid JSON: {exc}") from None
    except RecursionError:  # ~1000 nested arrays or objects: 2 KB of brackets
        raise RequestError("body", "not valid JSON: nested too deeply") from None
    # JSON's \ud800 escapes make text that is not Unicode (a lone surrogate): it cannot be
    # stored, logged or sent as UTF-8, so it stops here rather than in the database writer.
    if "\\u" in text and (where := _unencodable_text(body)) is not None:
        raise RequestError(where, "text must be valid Unicode: it holds a lone surrogate "
                           "(a \\ud800-\\udfff escape)")
    return body


def _unencodable_text(value: Any) -> str | None:
    """The field name of the first string (or key) in `value` that UTF-8 cannot encode."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, field = stack.pop()
        if isinstance(item, str):
            if not _utf8(item):
                return field or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _utf8(key):
                    return field or "body"
                stack.append((child, f"{field}.{key}" if field else key))
        elif isinstance(item, list):
            stack.extend((child, f"{field}[{i}]") for i, child in enumerate(item))
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _time_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:  # float() takes "nan" and "inf"
        raise RequestError(name, "must be a Unix time in seconds (0 or more)")
    return value


_UNAUTHORIZED = {"error": "missing or invalid bearer token", "field": "authorization"}


def _authorized(settings: Settings, headers: Any, args: Any) -> bool:
    """With COLLECTOR_API_TOKEN set, a request needs `Authorization: Bearer <token>` (WebSocket
    clients that cannot set headers may pass `?access_token=<token>`)."""
    if not settings.api_token:
        return True
    given = headers.get("Authorization", "")
    token = given[7:] if given.startswith("Bearer ") else args.get("access_token", "")
    return hmac.compare_digest(token.encode(), settings.api_token.encode())


async def _drop_incoming() -> None:
    """Read and drop what a WebSocket client sends: the protocol has nothing for it to say, but
    some clients send pings of their own. Unread, ~20 messages fill quart-trio's and hypercorn's
    queues, after which the client's disconnect is never seen, and its connection and job
    subscription would stay until shutdown."""
    while True:
        await websocket.receive()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()

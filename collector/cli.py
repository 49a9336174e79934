"""`camera-collector collect|jobs|watch`: a command-line client of a running collector.

    camera-collector collect URL... --duration S --segment-seconds S [--format mp4]
    camera-collector jobs [--status S] [--limit N]
    camera-collector watch JOB_ID

`collect` starts a job, follows it over the job's WebSocket (`?format=json`) with a progress bar,
then prints the job's segment files, one path a line on stdout (progress and summaries go to stderr,
so `camera-collector collect ... > files.txt` keeps just the list). Ctrl-C cancels the job it
started. `watch` follows a job that already runs (or replays one that ended).

Exit status: 0 when the job completed; 1 when it failed, was cancelled or interrupted, or the
watch was interrupted; 2 on a usage error, a request the server refused, or no connection.
Every command takes `--server` (default `$COLLECTOR_URL` or http://localhost:8000) and `--token`
(default `$COLLECTOR_API_TOKEN`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVER = "http://localhost:8000"
WS_CLOSE_NORMAL, WS_CLOSE_GOING_AWAY, WS_CLOSE_POLICY = 1000, 1001, 1008
HTTP_TIMEOUT_S = 10.0
WIDE_OUTPUT = 240  # columns for tables written to a pipe or a file
ACTIVE = ("queued", "running")


class UsageError(Exception):
    """The command cannot run: bad arguments, a refused request, or no server (exit 2)."""


# --- arguments --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=os.environ.get("COLLECTOR_URL", DEFAULT_SERVER),
                        help="the collector's base URL (default: $COLLECTOR_URL or %(default)s)")
    common.add_argument("--token", default=os.environ.get("COLLECTOR_API_TOKEN") or None,
                        help="bearer token (default: $COLLECTOR_API_TOKEN)")
    parser = argparse.ArgumentParser(
        prog="camera-collector", description="Collect video from IP cameras on demand.",
        epilog="Exit status: 0 completed, 1 failed/cancelled/interrupted, 2 usage or connection.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the service on $PORT (the default command)")

    collect = commands.add_parser("collect", parents=[common], help="start a job and follow it")
    collect.add_argument("urls", nargs="+", metavar="URL", help="camera URL (or demo://testsrc)")
    collect.add_argument("--duration", type=_positive, metavar="S",
                         help="seconds of video from each source (server default: 10)")
    collect.add_argument("--segment-seconds", type=_positive, metavar="S",
                         help="target segment length (server default: 2)")
    collect.add_argument("--format", choices=["mp4", "mkv", "ts"], help="container (default mp4)")
    collect.add_argument("--retry-attempts", type=int, metavar="N",
                         help="consecutive failed sessions before a source is given up")
    collect.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                         help="FFmpeg input option for every source, e.g. rtsp_transport=udp")

    jobs = commands.add_parser("jobs", parents=[common], help="list recent jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "completed", "failed",
                                           "cancelled", "interrupted"])
    jobs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    watch = commands.add_parser("watch", parents=[common], help="follow a job's progress")
    watch.add_argument("job_id", metavar="JOB_ID")
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def collect_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /collect body for `collect`'s arguments; the server's defaults fill the rest."""
    body: dict[str, Any] = {"streams": list(args.urls)}
    if args.duration is not None:
        body["duration"] = args.duration
    if args.segment_seconds is not None:
        body["segment_seconds"] = args.segment_seconds
    if args.format is not None:
        body["format"] = args.format
    if args.retry_attempts is not None:
        body["retry"] = {"max_attempts": args.retry_attempts}
    if args.option:
        options = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--option wants KEY=VALUE, got {item!r}")
            options[key] = value
        body["options"] = options
    return body


def exit_code(status: str | None) -> int:
    return EXIT_OK if status == "completed" else EXIT_JOB_FAILED


# --- entry point ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    if not out.is_terminal:  # a pipe or a file: never cut a job id to fit 80 columns
        out = Console(soft_wrap=True, width=WIDE_OUTPUT)
    try:
        return trio.run(_run, args, out, err)
    except UsageError as exc:
        err.print(f"camera-collector: {exc}", markup=False, highlight=False)
        return EXIT_USAGE


async def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    client = Client(args.server, args.token)
    try:
        async with client.http:
            match args.command:
                case "collect":
                    return await _collect(client, args, out, err)
                case "watch":
                    return await _watch(client, args.job_id, out, err, cancel_on_interrupt=False)
                case "jobs":
                    return await _jobs(client, args.status, args.limit, out)
                case _:
                    raise AssertionError(args.command)
    except (httpx.TransportError, OSError) as exc:
        raise UsageError(f"cannot reach the collector at {args.server}: {exc}") from None


async def _collect(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    answer = await client.request("POST", "/collect", json=collect_body(args))
    job_id = answer["job_id"]
    err.print(f"job {job_id} started", markup=False, highlight=False)
    return await _watch(client, job_id, out, err, cancel_on_interrupt=True)


async def _watch(
    client: Client, job_id: str, out: Console, err: Console, *, cancel_on_interrupt: bool
) -> int:
    job = await client.request("GET", f"/jobs/{job_id}")
    view = ProgressView(err, job_id, job["progress"]["total"])
    follower = Follower(client, job_id, view.on_event)
    with view:
        await _until_sigint(follower.run)
    if not follower.finished:
        err.print("interrupted", markup=False, highlight=False)
        if not cancel_on_interrupt:
            return EXIT_JOB_FAILED
        with trio.move_on_after(HTTP_TIMEOUT_S):
            await client.request("DELETE", f"/jobs/{job_id}")
            err.print(f"job {job_id} cancelled", markup=False, highlight=False)
    try:
        with trio.fail_after(HTTP_TIMEOUT_S):
            job = await _wait_final(client, job_id)
    except (httpx.TransportError, OSError, trio.TooSlowError) as exc:
        # the server went away (a shutdown ends jobs as `interrupted`): report what we saw
        err.print(f"cannot read the job's final state: {exc}", markup=False, highlight=False)
        return exit_code(follower.status)
    print_result(job, out, err)
    return exit_code(job["status"])


async def _until_sigint(fn: Callable[[], Awaitable[None]]) -> None:
    """Run `fn` until it returns or Ctrl-C cancels it; its own error comes out unwrapped."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_on_sigint, nursery.cancel_scope)
            await fn()
            nursery.cancel_scope.cancel()
    except ExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _on_sigint(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _wait_final(client: Client, job_id: str) -> dict[str, Any]:
    """GET /jobs/{id} until it is no longer active (it ends just after its last event)."""
    while True:
        job = await client.request("GET", f"/jobs/{job_id}")
        if job["status"] not in ACTIVE:
            return job
        await trio.sleep(0.1)


async def _jobs(client: Client, status: str | None, limit: int, out: Console) -> int:
    params: dict[str, str | int] = {"limit": limit}
    if status is not None:
        params["status"] = status
    answer = await client.request("GET", "/jobs", params=params)
    out.print(jobs_table(answer["jobs"]))
    return EXIT_OK


# --- rendering --------------------------------------------------------------------------------


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("JOB ID", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PROGRESS", justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("TOOK", justify="right", no_wrap=True)
    table.add_column("ERROR", overflow="fold")
    for job in jobs:
        started, finished = job.get("started_at"), job.get("finished_at")
        took = f"{finished - started:.1f}s" if started and finished else ""
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created_at"]))
        progress = f"{job['progress']['step']}/{job['progress']['total']}"
        table.add_row(job["job_id"], job["status"], progress, created, took, job.get("error") or "")
    return table


def print_result(job: dict[str, Any], out: Console, err: Console) -> None:
    """Segment files on stdout, one a line; a summary per source and the outcome on stderr."""
    for source in job["sources"]:
        segments = source["segments"]
        seconds = sum(s["duration"] for s in segments)
        size = sum(s["bytes"] for s in segments)
        err.print(f"{source['name']} ({source['url']}): {source['status']}, {len(segments)} "
                  f"segments, {seconds:.1f} s, {size} bytes", markup=False, highlight=False)
        for seg in segments:
            out.print(seg["path"], markup=False, highlight=False)
    line = f"job {job['job_id']} {job['status']}"
    if job.get("error") and job["error"] != job["status"]:
        line += f": {job['error']}"
    err.print(line, markup=False, highlight=False)


class ProgressView:
    """A live progress bar on a terminal; plain lines, one per event, anywhere else."""

    def __init__(self, console: Console, job_id: str, total: int) -> None:
        self.console, self.job_id, self.total = console, job_id, total
        self.live = console.is_terminal
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task(f"job {job_id[:8]}", total=total or None)

    def __enter__(self) -> ProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "progress":
            segment = event.get("segment") or {}
            name = segment.get("path", "").rsplit("/", 1)[-1]
            where = f"{event.get('source', '')} {name}".strip()
            self.progress.update(self.task, completed=event["step"], total=event["total"],
                                 description=f"job {self.job_id[:8]} {where}")
        if not self.live and event.get("message"):
            self.console.print(event["message"], markup=False, highlight=False)
        elif self.live and kind in ("error", "interrupted"):
            self.console.print(event.get("message") or f"{kind}: {event.get('reason', '')}",
                               markup=False, highlight=False)


# --- HTTP and WebSocket -----------------------------------------------------------------------


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--server must be an http:// or https:// URL, got {server!r}")
        self.server = server.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.server, headers=self.headers,
                                      timeout=HTTP_TIMEOUT_S)

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            problem = body.get("error") or response.reason_phrase
            where = f" ({body['field']})" if body.get("field") else ""
            raise UsageError(f"{method} {path}: {response.status_code} {problem}{where}")
        return body

    def ws_target(self, job_id: str) -> str:
        base = urlsplit(self.server)
        return f"{base.path}/ws/{job_id}?format=json"


@dataclass(slots=True)
class Follower:
    """Follows a job's JSON events; resubscribes after a 1008 (too slow), skipping the replay."""

    client: Client
    job_id: str
    on_event: Callable[[dict[str, Any]], None]
    seen: int = 0
    status: str | None = None
    finished: bool = False

    async def run(self) -> None:
        while True:
            code = await self._follow_once()
            if code != WS_CLOSE_POLICY:
                self.finished = True
                return

    async def _follow_once(self) -> int | None:
        replay = 0

        def deliver(text: str) -> None:
            nonlocal replay
            replay += 1
            if replay <= self.seen:
                return
            self.seen += 1
            event = json.loads(text)
            self.status = _status_of(event, self.status)
            self.on_event(event)

        return await read_ws(self.client, self.client.ws_target(self.job_id), deliver)


def _status_of(event: dict[str, Any], status: str | None) -> str | None:
    match event.get("type"):
        case "completed":
            return "completed"
        case "error":
            return "cancelled" if event.get("error") == "cancelled" else "failed"
        case "interrupted":
            return "interrupted"
        case _:
            return status


async def read_ws(client: Client, target: str, deliver: Callable[[str], None]) -> int | None:
    """Deliver every text frame of one WebSocket connection; the server's close code."""
    parts = urlsplit(client.server)
    host = parts.hostname or ""  # Client checked that there is one
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    if tls:
        stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
            host, port, https_compatible=True
        )
    else:
        stream = await trio.open_tcp_stream(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    headers = [(k.lower().encode(), v.encode()) for k, v in client.headers.items()]
    text = ""
    async with stream:
        await stream.send_all(ws.send(Request(host=parts.netloc, target=target,
                                              extra_headers=headers)))
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return None
            ws.receive_data(bytes(data))
            for event in ws.events():
                match event:
                    case AcceptConnection():
                        pass
                    case RejectConnection():
                        raise UsageError(f"WebSocket {target} refused: {event.status_code}")
                    case TextMessage():
                        text += event.data
                        if event.message_finished:
                            deliver(text)
                            text = ""
                    case Ping():
                        await stream.send_all(ws.send(event.response()))
                    case CloseConnection():
                        try:
                            await stream.send_all(ws.send(event.response()))
                        except trio.BrokenResourceError:
                            pass
                        return event.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

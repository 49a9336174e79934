"""The process: our root nursery runs the supervisor beside `hypercorn.trio.serve`.

Shutdown (SIGTERM or SIGINT, or `stop` set by a test): WebSockets are closed with 1001, every job
closes its open segments and becomes `interrupted`, then hypercorn stops accepting and drains its
connections, then the supervisor gets a bounded grace before it is cancelled.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from actors.messages import Drain, ask
from actors.supervisor import Supervisor
from collector import http_send
from collector.app import create_app
from collector.config import Settings
from collector.inflight import InFlight
from collector.media.demo import DemoOpener
from collector.media.opener import Opener
from collector.media.pyav_source import PyAVOpener
from collector.params import config_cameras
from collector.rtsp.opener import RtspOpener
from collector.rtsp.tls import context_trusting
from collector.storage import database_url
from collector.storage.owner import DatabaseInUse, hold
from collector.urls import DEMO_URL, scheme_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Running:
    """What `serve` reports once it listens: its URLs and, for tests and tools, the supervisor."""

    urls: list[str]
    supervisor: Supervisor

    @property
    def url(self) -> str:
        return self.urls[0]


def make_opener_for(settings: Settings, requests: InFlight | None = None) -> partial[Opener]:
    """Picks the opener of a URL. `requests`: the HTTP requests in flight, which the RTSP
    sessions' reads let go first (rtsp/ticker.py)."""
    limiter = trio.CapacityLimiter(settings.camera_threads)
    demo, pyav = DemoOpener(limiter), PyAVOpener(limiter, io_timeout_s=settings.io_timeout_s)
    # rtsp:// and rtsps:// over TCP are read natively on trio; UDP and HTTP-tunnelled RTSP go
    # through PyAV (the RTSP opener hands them to its fallback)
    rtsp = RtspOpener(
        io_timeout_s=settings.io_timeout_s, stall_timeout_s=settings.stall_timeout_s, fallback=pyav,
        allowed_hosts=settings.allowed_hosts,
        ssl_context=context_trusting(settings.rtsps_ca_file) if settings.rtsps_ca_file else None,
        requests=requests,
    )
    return partial(_pick_opener, demo, pyav, rtsp)


def _pick_opener(demo: Opener, pyav: Opener, rtsp: Opener, url: str) -> Opener:
    if url == DEMO_URL:
        return demo
    return rtsp if scheme_of(url) in ("rtsp", "rtsps") else pyav


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout_s
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus'
    return config


async def serve(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the service until a signal arrives (or `stop` is set)."""
    stop = trio.Event() if stop is None else stop
    await trio.Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    url = database_url(settings.database_url or None, Path(settings.data_dir))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # A process that is draining may hold the history for its grace, and a little more to
        # exit. Stopped while waiting for it (a deploy gave up on this process), exit cleanly.
        refused: DatabaseInUse | None = None
        async with trio.open_nursery() as waiting:
            waiting.start_soon(_stop_on_signal, signals, stop)
            try:
                owner = await hold(url, settings.graceful_timeout_s + 2, stop)
            except DatabaseInUse as exc:  # raised out here, not in the nursery's group
                refused = exc
            waiting.cancel_scope.cancel()
        if refused is not None:
            raise refused
        try:
            if stop.is_set():
                log.info("collector.stopped before it started (it waited for the history)")
                return
            await _serve(settings, url, stop, task_status, signals)
        finally:
            if owner is not None:
                owner()


async def _serve(
    settings: Settings, url: str, stop: trio.Event, task_status: trio.TaskStatus[Running],
    signals: AsyncIterator[int],
) -> None:
    draining, drained = trio.Event(), trio.Event()
    in_flight = InFlight()
    async with trio.open_nursery() as root:
        supervisor = await root.start(
            Supervisor(
                settings,
                make_opener_for(settings, in_flight),
                url,
                config_cameras(settings),
            ).run
        )
        app = create_app(supervisor, settings, draining, in_flight)
        http_done = trio.Event()
        binds = await root.start(
            partial(_serve_http, app, hypercorn_config(settings), drained.wait, http_done,
                    settings.send_timeout_s)
        )
        for bind in binds:
            log.info("collector.listening url=%s data_dir=%s", bind, settings.data_dir)
        task_status.started(Running(binds, supervisor))
        root.start_soon(_stop_on_signal, signals, stop)
        await stop.wait()
        draining.set()
        with trio.move_on_after(settings.graceful_timeout_s):
            stopped = await ask(supervisor.inbox, lambda r: Drain(reason="shutdown", reply=r))
            log.info("collector.drained jobs_interrupted=%d", stopped)
        drained.set()
        with trio.move_on_after(settings.graceful_timeout_s + 1):
            await http_done.wait()
        http_send.abort_sends()  # a client still not taking its answer waits no longer
        root.cancel_scope.cancel()  # jobs are drained and HTTP is closed: stop cameras now
    log.info("collector.stopped")


async def _serve_http(
    app: object,
    config: Config,
    shutdown_trigger: Callable[[], Awaitable[None]],
    done: trio.Event,
    send_timeout_s: float,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    # answers go out without a scheduler pass per piece, and a client that takes nothing of one
    # for send_timeout_s is dropped (http_send.py)
    http_send.install(send_timeout_s)
    try:
        await hypercorn_serve(
            app, config, shutdown_trigger=shutdown_trigger, task_status=task_status  # type: ignore[arg-type]
        )
    finally:
        done.set()


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for signum in signals:
        log.info("collector.signal name=%s", signal.Signals(signum).name)
        stop.set()
        return

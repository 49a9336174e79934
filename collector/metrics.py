"""`GET /metrics`: Prometheus metrics built at scrape time from `Supervisor.statistics()`.

Pull-style, so the actors stay free of metrics code: a custom prometheus-client `Collector` reads
one statistics snapshot per scrape and yields metric families; it lives in the app's own
`CollectorRegistry` (never the process-global one, so two apps in one process, as in the tests,
never collide). Label cardinality is bounded: job statuses are a closed set, and nothing is
labelled by job id or camera URL.

    camera_collector_jobs{status}                       gauge    jobs in the job table
    camera_collector_jobs_started_total                 counter  jobs accepted
    camera_collector_jobs_finished_total{status}        counter  jobs ended, by final status
    camera_collector_active_jobs                        gauge    queued or running
    camera_collector_cameras                            gauge    camera actors (active sources)
    camera_collector_cameras_connected                  gauge    cameras with an open session
    camera_collector_camera_subscribers                 gauge    job sources fed by cameras
    camera_collector_upstream_sessions_opened_total     counter
    camera_collector_upstream_session_failures_total    counter  failed opens and ended sessions
    camera_collector_packets_received_total             counter
    camera_collector_received_bytes_total               counter
    camera_collector_dropped_subscribers_total          counter  sources dropped for lagging
    camera_collector_websocket_subscribers              gauge
    camera_collector_data_dir_free_bytes                gauge    `shutil.disk_usage(data_dir)`
    camera_collector_data_dir_size_bytes                gauge
    camera_collector_event_loop_lag_seconds             histogram  how late `trio.sleep` wakes
    camera_collector_event_loop_lag_last_seconds        gauge
    process_*                                           prometheus-client's ProcessCollector

The jobs counters are derived from the job table, which keeps every job for the process's life.
"""

from __future__ import annotations

import bisect
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from actors.supervisor import SupervisorStatistics

log = logging.getLogger(__name__)

PREFIX = "camera_collector"
JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_INTERVAL_S = 0.25

class LoopLag:
    """Event-loop lag: how much later than asked a `trio.sleep` wakes, as a cumulative histogram.

    A busy loop (a handler that blocks, a flood of messages) shows here before anywhere else.
    """

    def __init__(self, interval_s: float = LAG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.last_s = 0.0
        self.sum_s = 0.0
        self.count = 0
        self.buckets = [0] * len(LAG_BUCKETS_S)  # per bucket, not cumulative

    def observe(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.last_s, self.sum_s, self.count = lag_s, self.sum_s + lag_s, self.count + 1
        index = bisect.bisect_left(LAG_BUCKETS_S, lag_s)
        if index < len(self.buckets):
            self.buckets[index] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(LAG_BUCKETS_S, self.buckets, strict=True):
            running += n
            out.append((repr(bound), running))
        out.append(("+Inf", self.count))
        return out

    async def run(self) -> None:
        """Measure forever; the caller cancels."""
        while True:
            asked = trio.current_time()
            await trio.sleep(self.interval_s)
            self.observe(trio.current_time() - asked - self.interval_s)


class SupervisorCollector(Collector):
    """Yields every `camera_collector_*` family from one statistics snapshot per scrape."""

    def __init__(
        self,
        statistics: Callable[[], SupervisorStatistics],
        data_dir: Path,
        lag: LoopLag,
    ) -> None:
        self.statistics, self.data_dir, self.lag = statistics, data_dir, lag

    def collect(self) -> Iterable[Metric]:
        stats = self.statistics()
        yield from self._jobs(stats)
        yield from self._cameras(stats)
        yield _gauge("websocket_subscribers", "WebSocket subscribers following a job.",
                     stats.websocket_subscribers)
        yield from self._disk()
        yield from self._loop()

    def _jobs(self, stats: SupervisorStatistics) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs in the job table by status.",
                                 labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], stats.jobs.get(status, 0))
        yield jobs
        yield CounterMetricFamily(f"{PREFIX}_jobs_started", "Jobs accepted by POST /collect.",
                                  value=sum(stats.jobs.values()))
        finished = CounterMetricFamily(f"{PREFIX}_jobs_finished", "Jobs ended, by final status.",
                                       labels=["status"])
        for status in FINISHED_STATUSES:
            finished.add_metric([status], stats.jobs.get(status, 0))
        yield finished
        yield _gauge("active_jobs", "Jobs queued or running.",
                     stats.jobs.get("queued", 0) + stats.jobs.get("running", 0))

    def _cameras(self, stats: SupervisorStatistics) -> Iterable[Metric]:
        cams = stats.cameras
        yield _gauge("cameras", "Camera actors: upstream sources some job records.", len(cams))
        yield _gauge("cameras_connected", "Cameras with an upstream session open now.",
                     sum(c.connected for c in cams))
        yield _gauge("camera_subscribers", "Job sources fed by a camera.",
                     sum(c.subscribers for c in cams))
        yield _counter("upstream_sessions_opened", "Upstream camera sessions opened.",
                       stats.sessions_opened)
        yield _counter("upstream_session_failures",
                       "Upstream sessions that failed to open or ended (each is retried).",
                       stats.session_failures)
        yield _counter("packets_received", "Media packets received from cameras.",
                       stats.packets_received)
        yield CounterMetricFamily(f"{PREFIX}_received_bytes",
                                  "Media payload bytes received from cameras.",
                                  value=stats.bytes_received, unit="bytes")
        yield _counter("dropped_subscribers",
                       "Job sources dropped for falling behind their camera.",
                       stats.dropped_subscribers)

    def _disk(self) -> Iterable[Metric]:
        try:
            usage = shutil.disk_usage(self.data_dir)
        except OSError as exc:  # a missing data dir must not break the whole scrape
            log.warning("metrics.disk_usage_failed data_dir=%s error=%s", self.data_dir, exc)
            return
        yield GaugeMetricFamily(f"{PREFIX}_data_dir_free_bytes",
                                "Bytes free to unprivileged users on the data dir's filesystem.",
                                value=usage.free, unit="bytes")
        yield GaugeMetricFamily(f"{PREFIX}_data_dir_size_bytes",
                                "Size in bytes of the data dir's filesystem.",
                                value=usage.total, unit="bytes")

    def _loop(self) -> Iterable[Metric]:
        lag = self.lag
        yield HistogramMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds",
            f"How late a {lag.interval_s:g} s trio.sleep woke up.",
            buckets=lag.cumulative(), sum_value=lag.sum_s, unit="seconds",
        )
        yield GaugeMetricFamily(f"{PREFIX}_event_loop_lag_last_seconds",
                                "The latest event-loop lag measurement.", value=lag.last_s,
                                unit="seconds")


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class Metrics:
    """The app's registry, its collectors, and the loop-lag task the app runs while serving."""

    def __init__(self, statistics: Callable[[], SupervisorStatistics], data_dir: Path) -> None:
        self.lag = LoopLag()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SupervisorCollector(statistics, Path(data_dir), self.lag))
        ProcessCollector(registry=self.registry)
        self._lag_scope: trio.CancelScope | None = None

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for an `Accept` header: OpenMetrics if asked for, else text 0.0.4."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def start(self, nursery: trio.Nursery) -> None:
        """Run the loop-lag probe in `nursery` until `stop()`."""
        scope = self._lag_scope = trio.CancelScope()

        async def probe() -> None:
            with scope:
                await self.lag.run()

        nursery.start_soon(probe)

    def stop(self) -> None:
        if self._lag_scope is not None:
            self._lag_scope.cancel()

"""`GET /metrics` against a real server: values follow a real job, the exposition is valid, and the
Grafana dashboard queries only metrics the service exports."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import LoopLag
from tests.client import wait_job

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "camera-collector.json"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def samples(text: str) -> dict[str, float]:
    """`name{label="v",...}` -> value, for every sample of a text exposition."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def scrape(client) -> dict[str, float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


@pytest.fixture
def promtool() -> str:
    """promtool's path: a visible skip where it is missing, a failure under CI (which has it).
    Requested before `collector`, so the skip keeps its reason."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed; scripts/system-packages installs prometheus")
        pytest.skip("promtool is not installed (Debian `prometheus`, scripts/system-packages); "
                    "CI requires it")
    return path


async def test_metrics_follow_a_demo_job(collector, client):
    """While a 2 s demo job runs the active gauges show it; afterwards the counters have risen,
    the job is counted as completed, and every active gauge is back at zero."""
    with trio.fail_after(30):
        before = await scrape(client)
        r = await client.post("/collect", json={"duration": 2, "segment_seconds": 1})
        job_id = r.json()["job_id"]
        seen: list[dict[str, float]] = []
        while (await client.get(f"/jobs/{job_id}")).json()["status"] in ("queued", "running"):
            seen.append(await scrape(client))
            await trio.sleep(0.1)
        job = await wait_job(client, job_id)
        after = await scrape(client)
    assert job["status"] == "completed"

    assert before["camera_collector_active_jobs"] == 0
    assert before["camera_collector_jobs_started_total"] == 0
    assert max(s["camera_collector_active_jobs"] for s in seen) == 1
    assert max(s["camera_collector_cameras"] for s in seen) == 1
    assert max(s["camera_collector_cameras_connected"] for s in seen) == 1
    assert max(s["camera_collector_camera_subscribers"] for s in seen) == 1
    assert max(s['camera_collector_jobs{status="running"}'] for s in seen) == 1

    for name in ("upstream_sessions_opened", "packets_received", "received_bytes"):
        series = [before, *seen, after]
        values = [s[f"camera_collector_{name}_total"] for s in series]
        assert values == sorted(values), f"{name} decreased: {values}"
        assert values[-1] > values[0], name
    assert after["camera_collector_upstream_sessions_opened_total"] == 1
    assert after["camera_collector_jobs_started_total"] == 1
    assert after['camera_collector_jobs_finished_total{status="completed"}'] == 1
    assert after['camera_collector_jobs_finished_total{status="failed"}'] == 0
    assert after['camera_collector_jobs{status="completed"}'] == 1
    for gauge in ("active_jobs", "cameras", "cameras_connected", "camera_subscribers",
                  "websocket_subscribers"):
        assert after[f"camera_collector_{gauge}"] == 0, gauge
    assert 0 < after["camera_collector_data_dir_free_bytes"] <= after[
        "camera_collector_data_dir_size_bytes"]
    assert after["camera_collector_event_loop_lag_seconds_count"] > 0  # the probe runs


async def test_packet_counters_survive_a_camera_nobody_scraped(collector, client):
    """Packets of a camera that started and stopped between two scrapes still count."""
    with trio.fail_after(30):
        before = await scrape(client)
        job_id = (await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
                  ).json()["job_id"]
        await wait_job(client, job_id)
        after = await scrape(client)
    assert after["camera_collector_packets_received_total"] > before[
        "camera_collector_packets_received_total"]


async def test_openmetrics_on_request(client):
    """An OpenMetrics Accept header gets OpenMetrics (ending in `# EOF`); none gets text 0.0.4."""
    with trio.fail_after(10):
        om = await client.get("/metrics", headers={"Accept": OPENMETRICS})
        plain = await client.get("/metrics")
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")
    assert "# TYPE camera_collector_received_bytes counter" in om.text
    assert "# UNIT camera_collector_received_bytes bytes" in om.text
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in plain.text


async def test_promtool_accepts_a_real_scrape(promtool, collector, client):
    """`promtool check metrics` finds no problem in a scrape taken after a real job."""
    with trio.fail_after(30):
        job_id = (await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
                  ).json()["job_id"]
        await wait_job(client, job_id)
        text = (await client.get("/metrics")).text
        done = await trio.run_process([promtool, "check", "metrics"], stdin=text.encode(),
                                      capture_stdout=True, capture_stderr=True, check=False)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0 and output.strip() == "", output


def dashboard_exprs() -> list[str]:
    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["expr"]] if isinstance(node.get("expr"), str) else []
            return own + [e for v in node.values() for e in walk(v)]
        if isinstance(node, list):
            return [e for v in node for e in walk(v)]
        return []

    return walk(json.loads(DASHBOARD.read_text()))


async def test_dashboard_queries_only_exported_metrics(collector, client):
    """Every metric name a dashboard PromQL expression uses appears in a real scrape."""
    with trio.fail_after(10):
        exported = {name.split("{")[0] for name in await scrape(client)}
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    for expr in exprs:
        used = set(re.findall(r"\b(?:camera_collector|process)_[a-z0-9_]+\b", expr))
        assert used, f"no metric in {expr!r}"
        missing = used - exported
        assert not missing, f"{expr!r} queries {sorted(missing)}, which the service does not export"


async def test_deploy_files_pass_promtool(promtool, tmp_path):
    """deploy/prometheus.yml is a valid Prometheus config, and every dashboard expression is valid
    PromQL (checked as recording rules, with Grafana's interval variables filled in)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}",
         "expr": expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
                     .replace("$__range", "1h")}
        for i, expr in enumerate(dashboard_exprs())
    ]}]}
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(json.dumps(rules))  # JSON is YAML
    with trio.fail_after(30):
        config = await trio.run_process(
            [promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml")],
            capture_stdout=True, capture_stderr=True, check=False)
        checked = await trio.run_process([promtool, "check", "rules", str(rules_file)],
                                         capture_stdout=True, capture_stderr=True, check=False)
    assert config.returncode == 0, (config.stdout + config.stderr).decode()
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


def test_provisioning_points_at_the_dashboard():
    """The Grafana provider loads the folder the dashboard JSON is in, and the dashboard uses the
    provisioned datasource's uid."""
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "camera-collector.yml")
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    compose = (DEPLOY / "docker-compose.yml").read_text()
    path = re.search(r"^\s*path:\s*(\S+)", provider.read_text(), re.M)
    assert path is not None
    assert f"./grafana/dashboards:{path.group(1)}" in compose
    uid = re.search(r"^\s*uid:\s*(\S+)", datasource.read_text(), re.M)
    assert uid is not None
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {uid.group(1)}



def test_loop_lag_histogram_is_cumulative():
    """Each observation lands in its bucket; the exposition's buckets are cumulative to +Inf."""
    lag = LoopLag()
    for value in (0.0005, 0.003, 0.003, 9.0, -0.001):
        lag.observe(value)
    buckets = dict(lag.cumulative())
    assert buckets["0.001"] == 2 and buckets["0.005"] == 4 and buckets["5.0"] == 4
    assert buckets["+Inf"] == lag.count == 5
    assert lag.last_s == 0.0


async def test_the_jobs_gauge_counts_the_job_table(settings, nursery, monkeypatch):
    """`camera_collector_jobs{status}` is the job table's count: after a restart (it read 0 for
    every status) and after purging a job no longer held in memory (it kept counting it)."""
    import functools

    import httpx

    import actors.supervisor
    from collector.server import serve

    monkeypatch.setattr(actors.supervisor, "FINISHED_KEPT_IN_MEMORY", 1)
    with trio.fail_after(40):
        async with trio.open_nursery() as first_life:  # ends when the first server has stopped
            stop = trio.Event()
            first = await first_life.start(functools.partial(serve, settings, stop=stop))
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
                ids = []
                for _ in range(3):
                    r = await client.post("/collect", json={"duration": 0.5,
                                                            "segment_seconds": 0.5})
                    ids.append(r.json()["job_id"])
                    await wait_job(client, ids[-1])
                last = (await client.post("/collect", json={"duration": 0.5})).json()["job_id"]
                await wait_job(client, last)  # its end evicts the older ones from memory
                assert (await scrape(client))['camera_collector_jobs{status="completed"}'] == 4
                # twice at once (a client retrying): one purge, counted once
                statuses: list[int] = []

                async def purge() -> None:
                    statuses.append((await client.delete(f"/jobs/{ids[0]}?purge=1")).status_code)

                async with trio.open_nursery() as both:
                    both.start_soon(purge)
                    both.start_soon(purge)
                assert sorted(statuses) == [200, 404]
                purged = await scrape(client)
            stop.set()
        second = await nursery.start(functools.partial(serve, settings, stop=trio.Event()))
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
            restarted = await scrape(client)
    assert purged['camera_collector_jobs{status="completed"}'] == 3
    assert restarted['camera_collector_jobs{status="completed"}'] == 3

"""Property-based fuzzing of the HTTP API against the real process: no input gets a 5xx (503 for
capacity excepted), and a refused request creates no job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_process import procfile_command

LISTENING = re.compile(r"collector\.listening url=http://[^:]+:(\d+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[httpx.Client]:
    """The real process; only 127.0.0.1 sources are allowed, so fuzzed URLs never leave the host."""
    data = tmp_path_factory.mktemp("fuzz")
    env = {
        **os.environ, "PORT": "0", "COLLECTOR_DATA_DIR": str(data / "data"),
        "COLLECTOR_ALLOWED_HOSTS": "127.0.0.1", "COLLECTOR_MAX_CONCURRENT_JOBS": "4",
        "COLLECTOR_MAX_DURATION_S": "5", "COLLECTOR_DEFAULT_DURATION_S": "2",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    proc = subprocess.Popen(procfile_command(), cwd=data, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    watchdog = threading.Timer(20, proc.kill)  # a server that never listens fails the fixture
    watchdog.start()
    port = None
    for line in proc.stdout:
        if m := LISTENING.search(line):
            port = int(m.group(1))
            break
    watchdog.cancel()
    assert port is not None, "server did not start"
    drain = threading.Thread(target=proc.stdout.read, daemon=True)  # keep the pipe from filling
    drain.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        drain.join(timeout=5)
        proc.stdout.close()


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
urls = st.sampled_from([
    "rtsp://127.0.0.1:9/x", "http://127.0.0.1:9/a.ts", "https://127.0.0.1:9/a.m3u8",
    "rtmp://127.0.0.1:9/live", "file:///etc/passwd", "/etc/passwd", "concat:/a|/b", "demo://testsrc",
    "rtsp://user:pw@127.0.0.1:9/x", "rtsp://", "http://[::1", "rtsp://evil.example/x", "",
]) | st.text(max_size=24)
options = st.dictionaries(
    st.sampled_from(
        ["rtsp_transport", "user_agent", "probesize", "analyzeduration", "headers", "x"]
    ),
    values, max_size=2,
)
source = urls | st.fixed_dictionaries(
    {"url": urls}, optional={"name": st.text(max_size=70), "options": options}
) | values
bodies = st.fixed_dictionaries({}, optional={
    "streams": st.lists(source, max_size=3) | values,
    "cameras": st.lists(st.text(max_size=8), max_size=2) | values,
    "duration": st.floats(allow_nan=False) | st.integers() | values,
    "segment_seconds": st.floats(allow_nan=False) | values,
    "format": st.sampled_from(["mp4", "mkv", "ts", "avi"]) | values,
    "options": options | values,
    "retry": st.fixed_dictionaries({}, optional={
        "max_attempts": st.integers() | values, "initial_backoff": st.floats(allow_nan=False),
        "max_backoff": st.floats(allow_nan=False)}) | values,
    "unknown": values,
}) | values


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_collect_never_500(server, body):
    """Any JSON body: a 200 with a job, or a 4xx/503 naming a field and creating nothing."""
    before = len(server.get("/jobs", params={"limit": 1000}).json()["jobs"])
    r = server.post(
        "/collect", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code in (200, 400, 404, 413, 503), r.text
    if r.status_code == 200:
        server.delete(f"/jobs/{r.json()['job_id']}")
    else:
        assert set(r.json()) == {"error", "field"}
        assert len(server.get("/jobs", params={"limit": 1000}).json()["jobs"]) == before


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200), path=st.sampled_from(["/collect", "/jobs", "/jobs/x", "/"]),
       query=st.dictionaries(st.sampled_from(["status", "limit", "before", "x"]),
                             st.text(max_size=10)))
def test_raw_requests_never_500(server, raw, path, query):
    """Raw bytes as bodies and odd query strings on every route never produce a 5xx."""
    for method in ("GET", "POST", "DELETE"):
        r = server.request(method, path, content=raw, params=query)
        assert r.status_code < 500 or r.status_code == 503, (method, path, r.text)
        if method == "POST" and path == "/collect" and r.status_code == 200:
            server.delete(f"/jobs/{r.json()['job_id']}")

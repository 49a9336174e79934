"""COLLECTOR_API_TOKEN: every endpoint but GET / needs the bearer token, WebSocket included."""

from __future__ import annotations

import pytest
import trio

from tests.client import expected_texts, read_ws, ws_url

TOKEN = "s3cret-token"


@pytest.fixture
def settings(tmp_path):
    from collector.config import load_settings

    return load_settings(
        {"COLLECTOR_API_TOKEN": TOKEN}, host="127.0.0.1", port=0, data_dir=tmp_path / "data"
    )


async def test_token_required_everywhere_but_health(collector, client):
    """Without the token: 401 JSON and no job; with it: the job runs and the WebSocket works."""
    good = {"Authorization": f"Bearer {TOKEN}"}
    with trio.fail_after(20):
        assert (await client.get("/")).status_code == 200
        for method, path in [("POST", "/collect"), ("GET", "/jobs"), ("GET", "/jobs/x"),
                             ("DELETE", "/jobs/x")]:
            r = await client.request(method, path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, path
            assert r.json() == {
                "error": "missing or invalid bearer token", "field": "authorization"
            }
        assert (await client.get("/jobs", headers=good)).json()["jobs"] == []
        denied = await read_ws(ws_url(collector.url, "anything"))
        assert denied.messages == [] and denied.code is None and "401" in (denied.reason or "")
        r = await client.post("/collect", json={"duration": 1, "segment_seconds": 1}, headers=good)
        job_id = r.json()["job_id"]
        transcript = await read_ws(ws_url(collector.url, job_id, f"access_token={TOKEN}"))
    assert transcript.messages == expected_texts(job_id, 1)

"""Capacity limits answer 503 with a JSON body; nothing crashes and no job is half-created."""

from __future__ import annotations

import pytest
import trio

from tests.client import wait_job


@pytest.fixture
def settings(tmp_path):
    from collector.config import load_settings

    return load_settings({}, host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                         max_concurrent_jobs=1)


async def test_too_many_running_jobs(client):
    with trio.fail_after(20):
        first = (await client.post("/collect", json={"duration": 2, "segment_seconds": 1})).json()
        r = await client.post("/collect", json={"duration": 2, "segment_seconds": 1})
        assert r.status_code == 503
        assert r.json() == {"error": "too many running jobs (1); try again later", "field": "jobs"}
        assert len((await client.get("/jobs")).json()["jobs"]) == 1
        await wait_job(client, first["job_id"])
        again = await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
    assert again.status_code == 200

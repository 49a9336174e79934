"""Bad input gets a 4xx JSON naming the field and the problem, and creates no job."""

from __future__ import annotations

import pytest
import trio

BAD_BODIES = [
    ("[1, 2]", "body", "must be a JSON object"),
    ("{not json", "body", "not valid JSON"),
    ('{"bogus": 1}', "bogus", "unknown field"),
    ('{"duration": "ten"}', "duration", "must be a number"),
    ('{"duration": true}', "duration", "must be a number"),
    ('{"duration": 0}', "duration", "must be > 0"),
    ('{"duration": -5}', "duration", "must be > 0"),
    ('{"duration": 1e9}', "duration", "must be > 0 and <= 3600"),
    ('{"segment_seconds": 0.01}', "segment_seconds", "must be between"),
    ('{"format": "avi"}', "format", "must be one of mp4, mkv, ts"),
    ('{"streams": "rtsp://cam/x"}', "streams", "must be a list"),
    ('{"streams": []}', "streams", "no sources"),
    ('{"streams": [42]}', "streams[0]", "must be a URL string or an object"),
    ('{"streams": ["file:///etc/passwd"]}', "streams[0].url", "URL scheme 'file' is not allowed"),
    ('{"streams": ["/etc/passwd"]}', "streams[0].url", "local paths are not allowed"),
    ('{"streams": ["concat:/a|/b"]}', "streams[0].url", "not allowed"),
    ('{"streams": ["ftp://host/x"]}', "streams[0].url", "URL scheme 'ftp' is not allowed"),
    ('{"streams": ["rtsp:///nohost"]}', "streams[0].url", "URL has no host"),
    ('{"streams": ["rtsp://h:99999/x"]}', "streams[0].url",
     "not a valid URL: the port must be a number from 0 to 65535"),
    # a password with an unencoded '#', '?' or '/': urllib's own error quoted part of it
    ('{"streams": ["rtsp://admin:Hunter2#x@10.0.0.5/s"]}', "streams[0].url",
     "password holding '#' or '?' must be percent-encoded"),
    ('{"streams": ["rtsp://admin:1234?x@10.0.0.5/s"]}', "streams[0].url",
     "password holding '#' or '?' must be percent-encoded"),
    ('{"streams": ["rtsp://admin:pa/ss@10.0.0.5/s"]}', "streams[0].url",
     "not a valid URL: the port must be a number"),  # quoted 'pa' before
    # text JSON can carry but UTF-8 cannot: it broke the database writer's whole batch
    ('{"streams": ["rtsp://127.0.0.1:1/\\ud800"]}', "streams[0]", "lone surrogate"),
    ('{"streams": [{"url": "rtsp://h/x", "name": "a\\udfffb"}]}', "streams[0].name",
     "lone surrogate"),
    ('{"\\ud800": 1}', "body", "lone surrogate"),
    ("[" * 1000 + "]" * 1000, "body", "nested too deeply"),
    ('{"retry": ' + "[" * 1000 + "]" * 1000 + "}", "body", "nested too deeply"),
    ('{"streams": [{"url": "rtsp://h/x", "name": "../../etc"}]}', "streams[0].name",
     "must be 1-64"),
    ('{"streams": [{"url": "rtsp://h/x", "extra": 1}]}', "streams[0].extra", "unknown field"),
    ('{"streams": ["rtsp://h/a", {"url": "rtsp://h/b", "name": "source-1"}]}', "streams",
     "two sources are named"),
    ('{"streams": [{"url": "rtsp://h/x", "options": {"rtsp_transport": "carrier-pigeon"}}]}',
     "streams[0].options.rtsp_transport", "must be one of tcp, udp, http, https"),
    ('{"options": {"protocol_whitelist": "file"}}', "options.protocol_whitelist",
     "option not allowed"),
    ('{"options": {"tls_verify": 2}}', "options.tls_verify", "must be 0 (do not check"),
    ('{"options": {"tls_verify": "no"}}', "options.tls_verify", "must be 0 (do not check"),
    ('{"cameras": ["nope"]}', "cameras[0]", "unknown camera 'nope'"),
    ('{"cameras": "front"}', "cameras", "must be a list of camera names"),
    ('{"retry": {"max_attempts": 0}}', "retry.max_attempts", "must be between 1 and 50"),
    ('{"retry": {"max_attempts": 1.5}}', "retry.max_attempts", "must be an integer"),
    ('{"retry": {"initial_backoff": 5, "max_backoff": 1}}', "retry.max_backoff",
     "must be >= retry.initial_backoff"),
    ('{"retry": {"forever": true}}', "retry.forever", "unknown field"),
    ('{"streams": [' + ",".join(['"rtsp://h/x"'] * 17) + "]}", "streams", "too many sources"),
]


@pytest.mark.parametrize(("body", "field", "problem"), BAD_BODIES)
async def test_bad_collect_body(client, body, field, problem):
    """Each malformed /collect body is a 400 naming the field; no job exists afterwards."""
    with trio.fail_after(10):
        r = await client.post(
            "/collect", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, r.text
        answer = r.json()
        assert answer["field"] == field
        assert problem in answer["error"]
        assert (await client.get("/jobs")).json() == {"jobs": [], "next": None}


async def test_body_too_large(client):
    """A body over the limit is a 413 JSON, not a crash."""
    with trio.fail_after(10):
        r = await client.post("/collect", content=b"{" + b" " * 70_000 + b"}")
    assert r.status_code == 413
    assert r.json()["field"] == "body"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("PUT", "/collect", 405), ("GET", "/jobs?status=weird", 400),
     ("GET", "/jobs?limit=0", 400), ("GET", "/jobs?before=nope", 400),
     ("GET", "/jobs?since=nan", 400), ("GET", "/jobs?until=inf", 400),
     ("GET", "/jobs?since=-infinity", 400), ("GET", "/jobs?until=-1", 400),
     ("GET", "/jobs?since=20&until=10", 400),
     # pass str.isdigit() and make int() raise: were 500s until 2026-11-27
     ("GET", "/jobs?limit=%C2%B2", 400), ("GET", "/jobs?limit=" + "1" * 5000, 400),
     ("GET", "/jobs/x/sources/%C2%B2/segments/0", 404),
     ("GET", "/jobs/x/sources/0/segments/" + "9" * 5000, 404)],
)
async def test_other_bad_requests_are_json(client, method, path, status):
    """Unknown paths, wrong methods and bad query parameters answer JSON errors, never 500."""
    with trio.fail_after(10):
        r = await client.request(method, path)
    assert r.status_code == status
    assert set(r.json()) == {"error", "field"}


async def test_a_time_window_that_cannot_hold_a_job_is_refused(client):
    """`since`/`until` are Unix times of creation: a negative one, or a window that ends before
    it starts, is refused with the field named (it would list nothing, silently)."""
    with trio.fail_after(10):
        negative = await client.get("/jobs?until=-1")
        backwards = await client.get("/jobs?since=20&until=10")
        empty = await client.get("/jobs?since=10&until=10")
    assert (negative.status_code, negative.json()) == (
        400, {"error": "must be a Unix time in seconds (0 or more)", "field": "until"})
    assert (backwards.status_code, backwards.json()) == (
        400, {"error": "must not be after until", "field": "since"})
    assert empty.status_code == 200


@pytest.mark.parametrize(("url", "shown"), [
    # parsers split at the last '@': the password holds one (port 9: connection refused)
    ("rtsp://admin:hunter2@Secret@127.0.0.1:9/cam", "rtsp://***@127.0.0.1:9/cam"),
    # an unencoded '/' in a password that starts with digits: parsers read the user name and
    # the digits as host and port (here 127.0.0.1:9, refused) and the rest as a path
    ("rtsp://127.0.0.1:9/hunter2Secret@camera.invalid/cam", "rtsp://***@camera.invalid/cam"),
])
async def test_credentials_never_shown(collector, client, caplog, url, shown):
    """A password in a source URL appears in no response, event, error text or log line."""
    import logging

    from tests.client import read_ws, wait_job, ws_url

    caplog.set_level(logging.DEBUG)
    with trio.fail_after(30):
        r = await client.post(
            "/collect", json={"streams": [url], "duration": 2,
                              "retry": {"max_attempts": 2, "initial_backoff": 0.1}}
        )
        job_id = r.json()["job_id"]
        job = await wait_job(client, job_id)
        texts = await read_ws(ws_url(collector.url, job_id))
        jsons = await read_ws(ws_url(collector.url, job_id, "format=json"))
        listing = await client.get("/jobs")
    assert job["status"] == "failed"
    assert shown in job["error"]
    assert "attempts" in job["error"]
    everything = "\n".join(
        [r.text, str(job), listing.text, *texts.messages, *jsons.messages,
         *(rec.getMessage() for rec in caplog.records), caplog.text]
    )
    assert "hunter2" not in everything and "Secret" not in everything
    assert texts.messages[-1].startswith(f"Error with Job ID {job_id}: source 'source-1'")


async def test_a_body_must_be_utf8(client):
    """json.loads takes UTF-16 and -32 bytes too: such a body passed the lone-surrogate check
    (its escape is not the bytes '\\u') and got a 500 from POST /cameras."""
    body = '{"name": "sur", "url": "rtsp://127.0.0.1:1/\\ud800"}'.encode("utf-16-le")
    with trio.fail_after(10):
        r = await client.post("/cameras", content=body,
                              headers={"content-type": "application/json"})
        listing = await client.get("/cameras")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body" and "not valid JSON" in r.json()["error"]
    assert '"sur"' not in listing.text


async def test_a_camera_with_text_utf8_cannot_encode_is_refused(client):
    """It was a 500 that still registered the camera in memory (but not in the database)."""
    with trio.fail_after(10):
        r = await client.post(
            "/cameras", content='{"name": "sur", "url": "rtsp://127.0.0.1:1/\\ud800"}',
            headers={"content-type": "application/json"},
        )
        listing = await client.get("/cameras")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "url" and "lone surrogate" in r.json()["error"]
    assert '"sur"' not in listing.text

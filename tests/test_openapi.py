"""The OpenAPI description matches the app: every route is described, and real answers (success
and errors) validate against the documented response models."""

from __future__ import annotations

import re

import trio
from jsonschema import Draft202012Validator

from collector.params import FIELDS
from tests.client import wait_job


def validator(spec: dict, path: str, method: str, status: int) -> Draft202012Validator:
    response = spec["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": spec["components"]})


def check(spec: dict, path: str, method: str, response) -> None:
    errors = list(validator(spec, path, method, response.status_code).iter_errors(response.json()))
    assert errors == [], f"{method.upper()} {path} {response.status_code}: {errors[0].message}"


async def test_every_route_is_described(collector, client):
    """Each HTTP rule of the app (but the docs themselves) is a path+method of the spec, and the
    documented /collect body has exactly the fields the handler accepts."""
    from collector.app import create_app

    with trio.fail_after(10):
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    app = create_app(collector.supervisor, collector.supervisor.settings, trio.Event())
    rules = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if not rule.websocket and rule.endpoint not in ("static", "openapi", "swagger_ui")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert rules == described
    body = spec["paths"]["/collect"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = spec["components"]["schemas"].get(
        body.get("$ref", "").split("/")[-1], body
    )["properties"]
    assert set(props) == set(FIELDS)


async def test_real_answers_match_the_models(collector, client):
    """A job's whole life through the API validates against the documented models."""
    with trio.fail_after(30):
        spec = (await client.get("/openapi.json")).json()
        check(spec, "/", "get", await client.get("/"))
        started = await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
        check(spec, "/collect", "post", started)
        job_id = started.json()["job_id"]
        await wait_job(client, job_id)
        check(spec, "/jobs/{job_id}", "get", await client.get(f"/jobs/{job_id}"))
        check(spec, "/jobs", "get", await client.get("/jobs"))
        check(spec, "/jobs/{job_id}/events", "get", await client.get(f"/jobs/{job_id}/events"))
        check(spec, "/jobs/{job_id}", "delete", await client.delete(f"/jobs/{job_id}"))
        check(spec, "/cameras", "post", await client.post("/cameras", json={"name": "a", "url": "demo://testsrc"}))
        check(spec, "/cameras", "get", await client.get("/cameras"))
        check(spec, "/cameras/{name}", "delete", await client.delete("/cameras/a"))
        for bad in (
            await client.post("/collect", json={"duration": -1}),
            await client.get("/jobs/nope"),
            await client.get("/jobs", params={"limit": 0}),
            await client.delete("/cameras/none"),
        ):
            assert bad.status_code in (400, 404)
        check(spec, "/collect", "post", await client.post("/collect", json={"duration": -1}))
        check(spec, "/jobs/{job_id}", "get", await client.get("/jobs/nope"))

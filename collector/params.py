"""The parameters of `POST /collect`: parsed and validated in full before any job exists.

Every problem raises `RequestError(field, problem)`, where `field` is a path into the body such as
`streams[1].url` or `retry.max_attempts`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.backoff import RetryPolicy
from collector.config import Settings
from collector.errors import RequestError
from collector.media.cutting import planned_steps
from collector.urls import DEMO_URL, check_host_allowed, check_source_url, redact

FIELDS = ("streams", "cameras", "duration", "segment_seconds", "format", "options", "retry")
FORMATS = ("mp4", "mkv", "ts")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# FFmpeg input options a client may set, each with a check of its value. Anything else is refused:
# FFmpeg silently ignores misspelled options, and some options open files or change protocols.
OPTION_RULES: dict[str, tuple[str, Any]] = {
    "rtsp_transport": ("one of tcp, udp, http, https", {"tcp", "udp", "http", "https"}),
    "rtsp_flags": ("prefer_tcp", {"prefer_tcp"}),
    "user_agent": ("printable text up to 200 characters", re.compile(r"^[ -~]{1,200}$")),
    "analyzeduration": ("an integer of microseconds up to 30000000", (0, 30_000_000)),
    "probesize": ("an integer of bytes from 32 to 50000000", (32, 50_000_000)),
    # 0: accept any TLS certificate (cameras with self-signed ones). The native RTSP client checks
    # rtsps:// certificates unless this is 0; for the sources PyAV reads it goes to FFmpeg as
    # FFmpeg's own `tls_verify`, whose default is not to check.
    "tls_verify": ("0 (do not check the TLS certificate) or 1", (0, 1)),
}
RETRY_BOUNDS = {
    "max_attempts": (1, 50),
    "initial_backoff": (0.05, 60.0),
    "max_backoff": (0.05, 600.0),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectRequest:
    sources: tuple[SourceSpec, ...]
    duration: float
    segment_seconds: float
    format: str
    retry: RetryPolicy

    @property
    def steps_per_source(self) -> int:
        return planned_steps(self.duration, self.segment_seconds)

    def redacted(self) -> dict[str, Any]:
        return {
            "streams": [
                {"name": s.name, "url": redact(s.url), "options": dict(s.options)}
                for s in self.sources
            ],
            "duration": self.duration,
            "segment_seconds": self.segment_seconds,
            "format": self.format,
            "retry": {
                "max_attempts": self.retry.max_attempts,
                "initial_backoff": self.retry.initial_backoff,
                "max_backoff": self.retry.max_backoff,
            },
        }


def parse_collect(
    body: object, settings: Settings, cameras: Mapping[str, SourceSpec]
) -> CollectRequest:
    """Validate a `/collect` body (None for no body) against the settings and camera registry."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(unknown[0], f"unknown field; allowed fields are {', '.join(FIELDS)}")

    shared_options = _options(body.get("options", {}), "options")
    sources = [
        *_streams(body.get("streams", []), shared_options),
        *_cameras(body.get("cameras", []), cameras, shared_options),
    ]
    if "streams" not in body and "cameras" not in body:
        sources = list(cameras.values()) or [SourceSpec(name="demo", url=DEMO_URL)]
        sources = [SourceSpec(name=s.name, url=s.url, options={**shared_options, **s.options})
                   for s in sources]
    if not sources:
        raise RequestError("streams", "no sources: give at least one stream or camera")
    if len(sources) > settings.max_sources_per_job:
        raise RequestError(
            "streams", f"too many sources ({len(sources)}); at most {settings.max_sources_per_job}"
        )
    for i, s in enumerate(sources):
        check_host_allowed(s.url, f"streams[{i}].url", settings.allowed_hosts)
    seen: set[str] = set()
    for s in sources:
        if s.name in seen:
            raise RequestError("streams", f"two sources are named {s.name!r}; names must differ")
        seen.add(s.name)

    duration = _number(body, "duration", settings.default_duration_s)
    if not 0 < duration <= settings.max_duration_s:
        raise RequestError("duration", f"must be > 0 and <= {settings.max_duration_s:g} seconds")
    segment = _number(body, "segment_seconds", settings.default_segment_s)
    if not settings.min_segment_s <= segment <= settings.max_duration_s:
        raise RequestError(
            "segment_seconds",
            f"must be between {settings.min_segment_s:g} and {settings.max_duration_s:g} seconds",
        )
    fmt = body.get("format", settings.default_format)
    if fmt not in FORMATS:
        raise RequestError("format", f"must be one of {', '.join(FORMATS)}")
    return CollectRequest(
        sources=tuple(sources),
        duration=duration,
        segment_seconds=segment,
        format=fmt,
        retry=_retry(body.get("retry", {}), settings.retry),
    )


def _streams(value: object, shared: dict[str, str]) -> list[SourceSpec]:
    if not isinstance(value, list):
        raise RequestError("streams", "must be a list of URLs or {url, name, options} objects")
    out = []
    for i, item in enumerate(value):
        where = f"streams[{i}]"
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict):
            raise RequestError(where, "must be a URL string or an object with url, name, options")
        extra = sorted(set(item) - {"url", "name", "options"})
        if extra:
            raise RequestError(f"{where}.{extra[0]}", "unknown field; allowed: url, name, options")
        url = check_source_url(item.get("url"), f"{where}.url")
        name = item.get("name", f"source-{i + 1}")
        if not isinstance(name, str) or not NAME.match(name):
            raise RequestError(
                f"{where}.name",
                "must be 1-64 letters, digits, '.', '_' or '-', not starting with . _ -",
            )
        options = {**shared, **_options(item.get("options", {}), f"{where}.options")}
        out.append(SourceSpec(name=name, url=url, options=options))
    return out


def _cameras(
    value: object, cameras: Mapping[str, SourceSpec], shared: dict[str, str]
) -> list[SourceSpec]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError("cameras", "must be a list of camera names")
    out = []
    for i, name in enumerate(value):
        spec = cameras.get(name)
        if spec is None:
            raise RequestError(f"cameras[{i}]", f"unknown camera {name!r}")
        out.append(SourceSpec(name=spec.name, url=spec.url, options={**shared, **spec.options}))
    return out


def _options(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RequestError(where, "must be an object of FFmpeg input options")
    out = {}
    for key, raw in value.items():
        rule = OPTION_RULES.get(key)
        if rule is None:
            allowed = ", ".join(sorted(OPTION_RULES))
            raise RequestError(
                f"{where}.{key}", f"option not allowed; allowed options are {allowed}"
            )
        expected, check = rule
        ok = False
        if isinstance(check, set):
            ok = isinstance(raw, str) and raw in check
        elif isinstance(check, re.Pattern):
            ok = isinstance(raw, str) and bool(check.match(raw))
        elif isinstance(check, tuple):
            ok = isinstance(raw, int) and not isinstance(raw, bool) and check[0] <= raw <= check[1]
        if not ok:
            raise RequestError(f"{where}.{key}", f"must be {expected}")
        out[key] = str(raw)
    return out


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise RequestError(key, "must be a number of seconds")
    return float(value)


def _retry(value: object, defaults: RetryPolicy) -> RetryPolicy:
    if not isinstance(value, dict):
        raise RequestError(
            "retry", "must be an object with max_attempts, initial_backoff, max_backoff"
        )
    extra = sorted(set(value) - set(RETRY_BOUNDS))
    if extra:
        raise RequestError(
            f"retry.{extra[0]}", "unknown field; allowed: " + ", ".join(RETRY_BOUNDS)
        )
    got: dict[str, float] = {}
    for key, (low, high) in RETRY_BOUNDS.items():
        if key not in value:
            continue
        raw = value[key]
        integer = key == "max_attempts"
        if isinstance(raw, bool) or not isinstance(raw, int if integer else int | float):
            raise RequestError(
                f"retry.{key}", "must be an integer" if integer else "must be a number"
            )
        if not low <= raw <= high:
            raise RequestError(f"retry.{key}", f"must be between {low:g} and {high:g}")
        got[key] = raw
    policy = RetryPolicy(
        max_attempts=int(got.get("max_attempts", defaults.max_attempts)),
        initial_backoff=float(got.get("initial_backoff", defaults.initial_backoff)),
        max_backoff=float(got.get("max_backoff", defaults.max_backoff)),
        multiplier=defaults.multiplier,
        jitter=defaults.jitter,
        stable_after=defaults.stable_after,
    )
    if policy.max_backoff < policy.initial_backoff:
        raise RequestError("retry.max_backoff", "must be >= retry.initial_backoff")
    return policy


def parse_camera(body: object, settings: Settings, where: str = "body") -> SourceSpec:
    """A camera for the registry (`POST /cameras`, or an entry of the configuration file)."""
    if not isinstance(body, dict):
        raise RequestError(where, "must be an object with name, url and options")
    extra = sorted(set(body) - {"name", "url", "options"})
    if extra:
        raise RequestError(extra[0], "unknown field; allowed: name, url, options")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise RequestError(
            "name", "must be 1-64 letters, digits, '.', '_' or '-', not starting with . _ -"
        )
    url = check_source_url(body.get("url"), "url")
    check_host_allowed(url, "url", settings.allowed_hosts)
    return SourceSpec(name=name, url=url, options=_options(body.get("options", {}), "options"))


def config_cameras(settings: Settings) -> tuple[SourceSpec, ...]:
    """Cameras listed in the configuration file (`cameras = [...]`), validated like the API's."""
    from collector.config import ConfigError, read_config_file

    if not settings.config_file:
        return ()
    items = read_config_file(settings.config_file).get("cameras", [])
    if not isinstance(items, list):
        raise ConfigError(f"{settings.config_file}: cameras must be a list")
    try:
        return tuple(parse_camera(item, settings, f"cameras[{i}]") for i, item in enumerate(items))
    except RequestError as exc:
        raise ConfigError(f"{settings.config_file}: camera {exc.field}: {exc.problem}") from None

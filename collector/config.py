"""Configuration: one typed object, read from the environment (`PORT`, `COLLECTOR_*`) at start.

Every value is validated when the process starts; a bad value stops it with a message naming the
variable. Units are in the names.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from actors.backoff import RetryPolicy


class ConfigError(Exception):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    data_dir: Path = Path("data")
    default_duration_s: float = 10.0
    default_segment_s: float = 2.0
    default_format: str = "mp4"
    max_duration_s: float = 3600.0
    min_segment_s: float = 0.5
    max_sources_per_job: int = 16
    max_concurrent_jobs: int = 64
    max_body_bytes: int = 64 * 1024
    io_timeout_s: float = 10.0  # FFmpeg socket timeout on open and on every read
    stall_timeout_s: float = 10.0  # no packets for this long: the session has failed
    graceful_timeout_s: float = 10.0  # SIGTERM: how long jobs and connections get to finish
    send_timeout_s: float = 60.0  # a client that takes nothing of an answer this long is dropped
    camera_threads: int = 256  # worker threads for PyAV sessions (one per camera session)
    writer_threads: int = 64  # worker threads that fsync closed segments (100 at once: p99 12 ms)
    subscriber_buffer: int = 256  # batches a job may fall behind its camera before it is dropped
    ws_buffer: int = 256  # unused since 2026-11-28 (actors/events.py); accepted so configs start
    log_level: str = "INFO"
    log_format: str = "plain"  # COLLECTOR_LOG_FORMAT: plain or json
    database_url: str = ""  # DATABASE_URL: postgresql://...; empty = SQLite file in data_dir
    config_file: str = ""  # COLLECTOR_CONFIG_FILE: JSON or TOML with settings and "cameras"
    min_free_bytes: int = 256 * 2**20  # disk guard: below this, no new jobs and running ones stop
    retention_max_age_s: float = 0.0  # delete finished jobs older than this (0 = keep)
    retention_max_bytes: int = 0  # keep stored segments under this total (0 = no limit)
    housekeeping_interval_s: float = 30.0  # how often the disk guard and retention run
    allowed_hosts: str = ""  # COLLECTOR_ALLOWED_HOSTS: names, *.suffix, IPs, CIDRs; empty = any
    api_token: str = ""  # COLLECTOR_API_TOKEN: when set, every endpoint but GET / needs it
    # COLLECTOR_RTSPS_CA_FILE: PEM certificates trusted for rtsps:// besides the system's store
    rtsps_ca_file: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)


# environment variable -> field name, for the fields that are not spelled COLLECTOR_<FIELD>
_ALIASES = {"PORT": "port", "DATABASE_URL": "database_url"}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from `environ` (default: os.environ) with keyword overrides on top."""
    env = os.environ if environ is None else environ
    types = {f.name: f.type for f in fields(Settings)}
    values: dict[str, object] = {}
    config_file = str(overrides.get("config_file") or env.get("COLLECTOR_CONFIG_FILE") or "")
    if config_file:
        for name, raw in read_config_file(config_file).items():
            if name == "cameras":
                continue
            if name not in types or name == "retry":
                raise ConfigError(f"{config_file}: unknown setting {name!r}")
            values[name] = _parse(f"{config_file}: {name}", str(raw), str(types[name]))
    names = {f"COLLECTOR_{name.upper()}": name for name in types if name != "retry"}
    names.update(_ALIASES)
    for var, name in names.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        values[name] = _parse(var, raw, str(types[name]))
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def read_config_file(path: str) -> dict[str, object]:
    """The optional configuration file: JSON, or TOML when it ends in .toml."""
    try:
        text = Path(path).read_text()
        if path.endswith(".toml"):
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object/table")
    return data


def _parse(var: str, raw: str, kind: str) -> object:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind}") from None
    return raw


def _validate(s: Settings) -> None:
    checks = [
        (0 <= s.port <= 65535, "PORT must be 0..65535"),
        (s.default_format in ("mp4", "mkv", "ts"),
         "COLLECTOR_DEFAULT_FORMAT must be mp4, mkv or ts"),
        (0 < s.default_duration_s <= s.max_duration_s, "COLLECTOR_DEFAULT_DURATION_S out of range"),
        (s.min_segment_s <= s.default_segment_s, "COLLECTOR_DEFAULT_SEGMENT_S below the minimum"),
        (s.max_sources_per_job >= 1, "COLLECTOR_MAX_SOURCES_PER_JOB must be at least 1"),
        (s.max_concurrent_jobs >= 1, "COLLECTOR_MAX_CONCURRENT_JOBS must be at least 1"),
        (s.io_timeout_s > 0, "COLLECTOR_IO_TIMEOUT_S must be positive"),
        (s.log_format in ("plain", "json"), "COLLECTOR_LOG_FORMAT must be plain or json"),
        (s.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
         "COLLECTOR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        (s.stall_timeout_s > 0, "COLLECTOR_STALL_TIMEOUT_S must be positive"),
        (s.send_timeout_s > 0, "COLLECTOR_SEND_TIMEOUT_S must be positive"),
        (s.camera_threads >= 1 and s.writer_threads >= 1, "thread counts must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)

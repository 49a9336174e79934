"""Retry policy and the delays between reconnection attempts (pure; driven by any clock)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 5  # consecutive failed sessions before a job gives a source up
    initial_backoff: float = 0.5  # seconds
    max_backoff: float = 10.0  # seconds
    multiplier: float = 2.0
    jitter: float = 0.1  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    stable_after: float = 30.0  # a session that delivered video this long resets the backoff


def backoff_delays(policy: RetryPolicy, rng: random.Random | None = None) -> Iterator[float]:
    """initial, initial*m, initial*m^2, ... capped at max_backoff, each with jitter applied."""
    rng = rng or random.Random()
    delay = policy.initial_backoff
    while True:
        factor = 1.0 + rng.uniform(-policy.jitter, policy.jitter) if policy.jitter else 1.0
        yield min(policy.max_backoff, delay) * factor
        delay = min(policy.max_backoff, delay * policy.multiplier)

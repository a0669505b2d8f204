"""Retry delays: how long a task waits before attempt n+1 after n failures."""

from __future__ import annotations

import hashlib
import math
import random

from weir_proto.spec import Backoff

RELATIVE_JITTER = 0.25
"""Relative jitter moves the delay by up to ±25%."""


def retry_delay(backoff: Backoff, failures: int, seed: str) -> float:
    """Seconds to wait after `failures` (>= 1) failed attempts, always within [min, max].

    Jitter is drawn from `seed` (flow/task/attempt) so the decision is a pure function of
    the log: replaying it, or a second replica deciding the same thing, gets the same delay.
    """
    n = float(max(failures, 1))
    base = float(backoff.base)
    try:
        match backoff.strategy:
            case "constant":
                delay = base
            case "linear":
                step = float(backoff.factor) if backoff.factor is not None else base
                delay = base + step * (n - 1)
            case "polynomial":
                delay = base * n ** float(backoff.power if backoff.power is not None else 2.0)
            case "exponential":
                delay = base * float(backoff.factor if backoff.factor is not None else 2.0) ** (
                    n - 1
                )
    except OverflowError:
        delay = math.inf
    if not math.isfinite(delay):
        return float(backoff.max)
    if backoff.jitter is not None:
        rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
        if backoff.jitter == "relative":
            delay *= 1 + RELATIVE_JITTER * (2 * rng.random() - 1)
        else:
            delay += base * rng.random()
    return float(min(max(delay, backoff.min), backoff.max))

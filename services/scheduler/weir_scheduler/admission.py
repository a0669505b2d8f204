"""SubmitAdmission: who may submit through `weir.api.submit` right now.

Two limits, checked before a submit is recorded (so a refusal loses nothing: the client was
told, and nothing was accepted):

- per client, a token bucket of `rate` submits per second and `burst` at once. NATS does not
  tell a service who published a request; the client here is the request's reply inbox
  prefix (`_INBOX.<id>`), one per connection. A client that makes up a new inbox per request
  escapes this limit, which is why there is also
- a cap on flows not ended yet across everyone (`max_pending`), beyond which every submit is
  answered `overloaded` until flows end.

Submits published straight to `weir.cmd.submit` are bounded by the WEIR_COMMANDS stream's
limits instead (JetStream refuses the publish once it is full).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_CLIENTS_TRACKED = 10_000
"""Buckets kept; the least recently seen client is forgotten first (it starts full again)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class SubmitRateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"submit rate {rate} and burst {burst} must be positive")
        self.rate = rate
        self.burst = burst
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def admit(self, client: str, now: float) -> float | None:
        """None if `client` may submit now (and count it); else seconds until it may."""
        bucket = self.buckets.pop(client, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self.buckets[client] = bucket
        if len(self.buckets) > MAX_CLIENTS_TRACKED:
            self.buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate


def client_of(reply: str) -> str:
    """The connection a request came from, as far as its reply subject tells:
    `_INBOX.<id>.<token>` -> `_INBOX.<id>`."""
    head, _, _ = reply.rpartition(".")
    return head or reply


@dataclass(frozen=True, slots=True)
class SubmitAdmission:
    rate: SubmitRateLimiter
    max_pending: int
    """Flows not ended yet (scheduled, pending, running, cancelling) beyond which submits
    are refused."""

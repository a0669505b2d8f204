"""What the scheduler answers a client: `WeirError` for a refused request (the same codes
as the API's), `SubmitVerdict` for what it recorded for a submit, and the one error for the
submits of a batch that JetStream refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import nats.js.errors
from weir_proto import subjects
from weir_proto.errors import ApiError, ErrorCode, SpecError, WeirException


class WeirError(WeirException):
    """An error answered by the scheduler (`code`, `message`, `details`) or the client;
    `code` is an `ErrorCode` value."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        details: list[SpecError] | None = None,
        flow_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code: str = code
        self.message = message
        self.details = details or []
        self.flow_id = flow_id
        self.retry_after = retry_after
        """Seconds after which the same request may succeed (`rate_limited`, `overloaded`)."""

    @classmethod
    def from_api(cls, error: ApiError) -> WeirError:
        return cls(error.code, error.message, error.details, error.flow_id, error.retry_after)


@dataclass(frozen=True, slots=True)
class SubmitVerdict:
    """What the scheduler recorded for a submit (`Client.submit(spec, verdict=True)`).

    - `accepted`: `flow_id` is the flow (`created` is False when the same spec had been
      submitted under that id before: a retry changes nothing).
    - `rejected`: `errors` lists every problem; `flow_id` is the rejected flow that records
      them (a new id when the spec's id belongs to another flow).
    - `duplicate`: another flow with the same unique key is waiting or running; `existing`
      (and `flow_id`) name it, and nothing new runs.
    """

    verdict: Literal["accepted", "rejected", "duplicate"]
    flow_id: str
    status: str
    created: bool = True
    existing: str | None = None
    errors: tuple[SpecError, ...] = ()
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"


def batch_refused(refused: Sequence[tuple[str, BaseException]], total: int) -> WeirError:
    """One error for the submits of a batch that JetStream refused, naming them."""
    first = refused[0][1]
    code = ErrorCode.UNAVAILABLE
    if isinstance(first, nats.js.errors.NoStreamResponseError):
        why = f"no stream takes {subjects.SUBMIT}; start the scheduler"
    elif isinstance(first, nats.js.errors.APIError):
        code = ErrorCode.OVERLOADED
        why = f"{subjects.STREAM_COMMANDS} is full ({first.description})"
    else:
        why = str(first) or type(first).__name__
    ids = ", ".join(flow_id for flow_id, _ in refused[:5])
    more = f" and {len(refused) - 5:,} more" if len(refused) > 5 else ""
    return WeirError(
        code,
        f"{len(refused):,} of {total:,} submits were refused: {why} (flows {ids}{more}); "
        "submit the batch again later (flows already queued are not queued twice)",
    )

"""Reading a submit: bytes to a structurally checked `FlowSpec`, with every problem the
planner would also find reported at once."""

from __future__ import annotations

import msgspec
from weir_proto.errors import SpecError
from weir_proto.spec import FlowSpec
from weir_proto.validation import Checked, check_flow, find_nul

from weir_scheduler.planner.collector import collector_paused
from weir_scheduler.planner.fields import TASK_PATH
from weir_scheduler.planner.graph import plan
from weir_scheduler.planner.result import LIMITS_DEFAULT, Limits, Rejected

_NUL_ESCAPE = rb"\u0000"


@collector_paused()
def decode(data: bytes, limits: Limits = LIMITS_DEFAULT) -> FlowSpec:
    """Decode and structurally check a submit. Raises `Rejected` with precise errors."""
    if len(data) > limits.max_submit_bytes:
        raise Rejected(
            [
                SpecError(
                    path="$",
                    message=(
                        f"submit is {len(data):,} bytes; the limit is {limits.max_submit_bytes:,}"
                        " (WEIR_MAX_SUBMIT_BYTES): split the flow or raise the limit"
                    ),
                )
            ]
        )
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise Rejected(
            [SpecError(path="$", message=f"submit is not valid JSON: {exc}; send a JSON object")]
        ) from None
    except RecursionError:
        raise Rejected(
            [SpecError(path="$", message="submit nests too deeply to be a flow spec")]
        ) from None
    except UnicodeDecodeError as exc:
        raise Rejected(
            [
                SpecError(
                    path="$", message=f"submit is not valid UTF-8 ({exc.reason}); send UTF-8 JSON"
                )
            ]
        ) from None
    if not isinstance(raw, dict):
        raise Rejected(
            [
                SpecError(
                    path="$",
                    message=(
                        f"submit must be a JSON object with name and tasks, "
                        f"got {type(raw).__name__}"
                    ),
                )
            ]
        )
    # JSON can only spell a NUL as the escape `\u0000` (a raw NUL is malformed), so a submit
    # without that escape needs no walk for one.
    nul = find_nul(raw) if _NUL_ESCAPE in data else None
    if nul is not None:
        given = raw.get("id")
        raise Rejected(
            [
                SpecError(
                    path=nul,
                    message=f"submit has a NUL character (\\u0000) at {nul}; remove it "
                    "(weir stores every submit in Postgres, which cannot hold one)",
                )
            ],
            flow_id=given if isinstance(given, str) and "\x00" not in given else None,
        )
    flow_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    checked = check_flow(raw)
    if not checked.errors:
        return msgspec.convert(checked.value, FlowSpec)
    raise Rejected(_with_later_problems(checked, limits), flow_id, name)


def _with_later_problems(checked: Checked, limits: Limits) -> list[SpecError]:
    """The structural problems and, so that one wrong type does not hide the rest, what
    `plan` finds in the spec with the wrong parts replaced (minus what they caused)."""
    errors = list(checked.errors)
    try:
        plan(msgspec.convert(checked.value, FlowSpec), limits)
    except Rejected as later:
        errors += [e for e in later.errors if not _caused_by(e.path, checked.errors)]
    except msgspec.ValidationError:
        pass  # the replaced spec is never invalid; if it were, the problems above stand
    position = {id(e): _task_index(e.path) for e in errors}
    return sorted(errors, key=lambda e: position[id(e)])


def _caused_by(path: str, structural: list[SpecError]) -> bool:
    """Whether a problem at `path` is one already reported: at the same place, inside it,
    or in the part of a task that holds it (not the flow's own `$` or `$.tasks`)."""
    for error in structural:
        if _within(path, error.path):
            return True
        if path not in ("$", "$.tasks") and _within(error.path, path):
            return True
    return False


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "["))


def _task_index(path: str) -> int:
    match = TASK_PATH.match(path)
    return int(match.group(1)) if match else -1

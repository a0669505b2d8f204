"""NATS subjects and JetStream streams: the addresses of the wire contract."""

from __future__ import annotations

SUBMIT = "weir.cmd.submit"
"""Publish a flow spec (JSON) here; durable once JetStream acknowledges it."""

API_PREFIX = "weir.api"
API_SUBMIT = "weir.api.submit"
API_GET = "weir.api.get"
API_LIST = "weir.api.list"
API_CANCEL = "weir.api.cancel"
API_RERUN = "weir.api.rerun"
API_RETRY = "weir.api.retry"
API_PAUSE = "weir.api.pause"
API_RESUME = "weir.api.resume"
API_UPDATE = "weir.api.update"
API_ATTEMPT = "weir.api.attempt"
API_QUERY = "weir.api.query"
API_TASKS = "weir.api.tasks"
"""Tasks across flows matching a filter."""
API_PRUNE = "weir.api.prune"
API_SCHEDULE_PREFIX = "weir.api.schedule"
"""`.create`, `.list`, `.pause`, `.resume`, `.delete`."""
API_SECRET_PREFIX = "weir.api.secret"
"""`.list`, `.put`, `.delete`: secret names and sealed (encrypted) values, never a key."""

HEARTBEAT_PREFIX = "weir.heartbeat"
"""Core NATS (not stored): runners say which attempts they are running."""

STATUS_PREFIX = "weir.status"
DISPATCH_PREFIX = "weir.dispatch"
EVENTS_PREFIX = "weir.events"

STREAM_COMMANDS = "WEIR_COMMANDS"
STREAM_STATUS = "WEIR_STATUS"
STREAM_DISPATCH = "WEIR_DISPATCH"
STREAM_EVENTS = "WEIR_EVENTS"
STREAM_LOGS = "WEIR_LOGS"
LOGS_PREFIX = "weir.logs"

SERVICE_NAME = "weir"
"""Name of the request/reply service (NATS micro; discoverable with `$SRV.PING.weir`)."""

DEFAULT_QUEUE = "default"


def status(flow_id: str) -> str:
    return f"{STATUS_PREFIX}.{flow_id}"


ON_EXIT_TOKEN = "on_exit"
"""Last token of the subjects of the on_exit task's attempts (`dispatch`)."""


def dispatch(queue: str, flow_id: str, on_exit: bool = False) -> str:
    """Where an attempt of `flow_id` waits for a runner of `queue`; per flow, so cancelling
    a flow can purge the attempts of it that no runner has taken yet. The flow's on_exit
    task waits one token deeper, so a fail_fast cancel purges every attempt but its own
    (`flow_dispatches`), and a user's cancel its own too (`on_exit_dispatches`)."""
    subject = f"{DISPATCH_PREFIX}.{queue}.{flow_id}"
    return f"{subject}.{ON_EXIT_TOKEN}" if on_exit else subject


def is_on_exit_dispatch(subject: str) -> bool:
    """Whether a dispatch came on the subject of an on_exit task's attempts."""
    return (
        subject.startswith(DISPATCH_PREFIX + ".")
        and subject.count(".") == 4
        and (subject.endswith("." + ON_EXIT_TOKEN))
    )


def queue_dispatches(queue: str) -> str:
    """What the runners of `queue` consume."""
    return f"{DISPATCH_PREFIX}.{queue}.>"


def flow_dispatches(flow_id: str) -> str:
    """Every dispatch of one flow but its on_exit task's, whatever its queue (to purge on
    cancel)."""
    return f"{DISPATCH_PREFIX}.*.{flow_id}"


def on_exit_dispatches(flow_id: str) -> str:
    """The dispatches of one flow's on_exit task (to purge on a user's cancel)."""
    return f"{DISPATCH_PREFIX}.*.{flow_id}.{ON_EXIT_TOKEN}"


def event(flow_id: str, event_type: str) -> str:
    return f"{EVENTS_PREFIX}.{flow_id}.{event_type}"


def logs(flow_id: str, task: str, attempt: int) -> str:
    """Chunks of one attempt's stdout/stderr (header Weir-Log-Stream), then an end marker."""
    return f"{LOGS_PREFIX}.{flow_id}.{task}.{attempt}"


def token(name: str, fallback: str) -> str:
    """`name` made safe as one NATS subject token (`fallback` when nothing is left)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or fallback


def heartbeat(runner: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{runner}"


CANCEL_REQUESTS = f"{EVENTS_PREFIX}.*.flow_cancel_requested"
"""Runners subscribe here to kill the running attempts of cancelled flows."""


def flow_events(flow_id: str) -> str:
    """Filter subject matching every event of one flow."""
    return f"{EVENTS_PREFIX}.{flow_id}.>"

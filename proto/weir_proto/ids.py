"""Identifiers: flow ids, attempt ids, event ids."""

from __future__ import annotations

import hashlib
import os
import re
import time

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS1123_LABEL_MAX = 63
DNS1123_LABEL_RULE = (
    "lower-case letters, digits and '-', at most 63, starting and ending alphanumeric"
)
"""What `is_dns_label` accepts, in the words of the errors that refuse a name."""


SCHEDULE_NAME_MAX = 40
"""At most 40 characters, so `<name>-<14-digit tick>` stays a 63-character flow id."""


def is_schedule_name(value: str) -> bool:
    """Whether `value` may name a cron schedule: a DNS-1123 label of at most 40 characters
    (the scheduler and weir-web both check it)."""
    return len(value) <= SCHEDULE_NAME_MAX and is_dns_label(value)


def is_dns_label(value: str) -> bool:
    """Whether `value` is a DNS-1123 label: flow ids and task names are, because they name
    pods and Kubernetes objects. The one check every layer (planner, API, SDK, web) uses."""
    return len(value) <= DNS1123_LABEL_MAX and DNS1123_LABEL.match(value) is not None


SECRET_NAME_MAX = 253
SECRET_NAME = re.compile(r"^(?!.*\.\.)[a-z0-9]([-a-z0-9._]*[a-z0-9])?\Z")
SECRET_NAME_RULE = (
    "lower-case letters, digits, '-', '_' and '.', at most 253, starting and ending with a "
    "letter or digit, never two '.' in a row"
)
"""What `is_secret_name` accepts, in the words of the errors that refuse a name."""


def is_secret_name(value: str) -> bool:
    """Whether `value` may name a secret of weir's store: a KV key and a Kubernetes Secret
    data key, whose dots split it into non-empty subject tokens (`a..b` would form the
    subject `$KV.weir-secrets.a..b`, which NATS refuses). The one check the CLI, the
    scheduler's API, weir-web and the runner use."""
    return len(value) <= SECRET_NAME_MAX and SECRET_NAME.match(value) is not None


_INSTANCE = re.compile(r"^(.+)\[(0|[1-9][0-9]{0,8})\]\Z")


def is_task_name(value: str) -> bool:
    """Whether `value` may name a task in a report: a DNS-1123 label, or an instance
    `NAME[i]` of a mapped task `NAME`."""
    match = _INSTANCE.match(value)
    return is_dns_label(match.group(1) if match else value)


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_flow_id(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A 26-character, time-sortable, DNS-1123-safe id (a lower-case ULID)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(entropy if entropy is not None else os.urandom(10), "big")
    return _base32(ms, 10) + _base32(rand & ((1 << 80) - 1), 16)


def flow_id_from_message(stream_seq: int, published_ms: int, stream: str) -> str:
    """The id of a flow submitted without one: stable across redeliveries of the message."""
    digest = hashlib.sha256(f"{stream}:{stream_seq}:{published_ms}".encode()).digest()[:10]
    return new_flow_id(published_ms, digest)


def attempt_id(flow_id: str, task: str, attempt: int) -> str:
    """`<flow>-<task>-<attempt>`, shortened with a hash when it would exceed 63 characters.
    An instance `NAME[i]` of a mapped task has its brackets as '-' and a hash of flow and
    task (the same for each of its attempts), so it never names another task's attempt."""
    full = f"{flow_id}-{task}-{attempt}"
    instance = "[" in task
    if len(full) <= DNS1123_LABEL_MAX and not instance:
        return full
    named = f"{flow_id}-{task}" if instance else full
    digest = hashlib.sha256(named.encode()).hexdigest()[:10]
    suffix = f"-{digest}-{attempt}"
    head = re.sub(r"[^-a-z0-9]+", "-", named[: DNS1123_LABEL_MAX - len(suffix)])
    return head.rstrip("-") + suffix


def event_id(flow_id: str, seq: int) -> str:
    """Events are identified by their place in their flow's log."""
    return f"{flow_id}.{seq}"

"""The query language of filters.py on in-memory rows: MemoryData's `flow_query` and
`task_query`, answering as the SQL does (tests/unit/test_data_contract.py runs both)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from weir_proto.api import FlowSummary, TaskSummary

from weir_scheduler.data.rows import FlowRow, TaskRow

Shape = TypeVar("Shape", bound=msgspec.Struct)


def row_as(target: type[Shape], row: msgspec.Struct, **more: Any) -> Shape:
    """`row` as the struct type `target` (an API view, or a row of another shape): the fields
    they share by name, new containers (tuples as lists, as the SQL's arrays come back), and
    `more` added or in place of the row's."""
    return msgspec.convert({**msgspec.structs.asdict(row), **more}, target, from_attributes=True)


def summary(flow: FlowRow, tasks: Iterable[TaskRow]) -> FlowSummary:
    return row_as(FlowSummary, flow, task_counts=dict(Counter(t.status for t in tasks)))


def task_summary(flow: FlowRow, task: TaskRow) -> TaskSummary:
    return row_as(TaskSummary, task, flow_name=flow.name)


def flow_matches(node: Any, flow: FlowRow, queues: Callable[[], set[str]]) -> bool:
    """Whether a flow passes a filter compile_filter accepted (FLOW_LEAVES); `queues` gives
    the queues of its tasks."""
    ((key, value),) = node.items()
    if key in ("and", "or", "not"):
        return _combine(key, value, lambda n: flow_matches(n, flow, queues))
    if key in ("id", "status", "queue"):
        wanted = set(value if isinstance(value, list) else [value])
        if key == "queue":
            return bool(wanted & queues())
        return (flow.id if key == "id" else flow.status) in wanted
    if key == "name":
        return bool(flow.name == value)
    if key == "tags_all":
        return set(value) <= set(flow.tags)
    if key == "tags_any":
        return bool(set(value) & set(flow.tags))
    if key in ("metadata", "params"):
        return contains(flow.metadata if key == "metadata" else flow.params, value)
    times = {"created": flow.created_at, "finished": flow.finished_at, "scheduled": flow.start_at}
    return _compare(times[key.partition("_")[0]], key, value)


def task_matches(node: Any, flow: FlowRow, task: TaskRow) -> bool:
    """Whether a task passes a filter compile_filter accepted with TASK_LEAVES."""
    ((key, value),) = node.items()
    if key in ("and", "or", "not"):
        return _combine(key, value, lambda n: task_matches(n, flow, task))
    if key in ("flow", "status", "queue"):
        wanted = set(value if isinstance(value, list) else [value])
        return {"flow": task.flow_id, "status": task.status, "queue": task.queue}[key] in wanted
    if key == "name":
        return bool(task.name == value)
    if key == "flow_name":
        return bool(flow.name == value)
    return _compare(task.finished_at, key, value)


def contains(document: Any, part: Any) -> bool:
    """jsonb's `document @> part`: objects by key, arrays by element, scalars equal and of
    the same JSON type (true is not 1)."""
    if isinstance(part, Mapping):
        return isinstance(document, Mapping) and all(
            k in document and contains(document[k], v) for k, v in part.items()
        )
    if isinstance(part, list):
        return isinstance(document, list) and all(
            any(contains(d, p) for d in document) for p in part
        )
    if isinstance(document, Mapping | list):
        return False
    return _json_type(document) == _json_type(part) and document == part


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _combine(key: str, value: Any, test: Callable[[Any], bool]) -> bool:
    if key == "and":
        return all(test(v) for v in value)
    if key == "or":
        return any(test(v) for v in value)
    return not test(value)


def _compare(column: datetime | None, key: str, value: Any) -> bool:
    if column is None:
        return False
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return column > moment if key.endswith("_after") else column < moment

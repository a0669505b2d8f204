"""The query language: a JSON filter compiled to parameterised, parenthesised SQL, over
flows (`weir.api.query`) or over tasks across flows (`weir.api.tasks`).

```json
{"and": [{"status": ["failed", "cancelled"]},
         {"or": [{"tags_any": ["nightly"]}, {"not": {"name": "etl"}}]},
         {"created_after": "2026-11-01T00:00:00Z"}]}
```

Flow leaves (`FLOW_LEAVES`): `id` and `status` (one or a list), `name`, `queue` (one or a
list: flows with a task on it), `tags_all`, `tags_any`, `metadata` and `params` (objects:
equality by containment), `created_after`, `created_before`, `finished_after`,
`finished_before`, `scheduled_after`, `scheduled_before` (the delayed start). Task leaves
(`TASK_LEAVES`): `flow` and `status` and `queue` (one or a list), `name`, `flow_name`,
`finished_after`, `finished_before`. Combinators: `and`, `or` (lists), `not`. Values are
always bound parameters; every combinator is wrapped in parentheses, so `a OR b AND c` can
never happen. The SQL reads the flows table as `f` and the tasks table as `t`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from weir_proto.errors import WeirException

FILTER_DEPTH_MAX = 16
FILTER_NODES_MAX = 200


@dataclass(frozen=True, slots=True)
class Leaf:
    """One condition: how its value is checked and which SQL it becomes."""

    kind: str
    """`strings` (one or a list), `string`, `tags`, `object` or `time`."""
    sql: str
    """The SQL with `{}` where the bound value goes; for `strings`, where `= $n` (one value,
    so a btree index also gives the listing's order) or `= ANY($n)` goes."""


_QUEUE_OF_FLOW = "EXISTS (SELECT 1 FROM tasks q WHERE q.flow_id = f.id AND q.queue {})"

FLOW_LEAVES: Mapping[str, Leaf] = {
    "id": Leaf("strings", "f.id {}"),
    "status": Leaf("strings", "f.status {}"),
    "name": Leaf("string", "f.name = {}"),
    "queue": Leaf("strings", _QUEUE_OF_FLOW),
    "tags_all": Leaf("tags", "f.tags @> {}::text[]"),
    "tags_any": Leaf("tags", "f.tags && {}::text[]"),
    "metadata": Leaf("object", "f.metadata @> {}::jsonb"),
    "params": Leaf("object", "f.params @> {}::jsonb"),
    "created_after": Leaf("time", "f.created_at > {}"),
    "created_before": Leaf("time", "f.created_at < {}"),
    "finished_after": Leaf("time", "f.finished_at > {}"),
    "finished_before": Leaf("time", "f.finished_at < {}"),
    "scheduled_after": Leaf("time", "f.start_at > {}"),
    "scheduled_before": Leaf("time", "f.start_at < {}"),
}
TASK_LEAVES: Mapping[str, Leaf] = {
    "flow": Leaf("strings", "t.flow_id {}"),
    "flow_name": Leaf("string", "f.name = {}"),
    "name": Leaf("string", "t.name = {}"),
    "status": Leaf("strings", "t.status {}"),
    "queue": Leaf("strings", "t.queue {}"),
    "finished_after": Leaf("time", "t.finished_at > {}"),
    "finished_before": Leaf("time", "t.finished_at < {}"),
}


class FilterError(WeirException, ValueError):
    """The filter is not valid; the message names the path and what is expected."""


def leaf_value(key: str, leaf: Leaf, value: Any, where: str) -> Any:
    """The value of a condition as it is bound (a list of strings, a string, JSON text, an
    aware time), or FilterError saying what the condition expects."""
    if leaf.kind == "strings":
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise FilterError(f"{where}: expects a string or a list of strings")
        return values
    if leaf.kind == "string":
        if not isinstance(value, str):
            raise FilterError(f"{where}: expects a string")
        return value
    if leaf.kind == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise FilterError(f"{where}: expects a list of tags")
        return value
    if leaf.kind == "object":
        if not isinstance(value, dict) or not value:
            raise FilterError(f"{where}: expects an object of key: value pairs")
        return value
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{where}: expects an ISO 8601 time, e.g. 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise FilterError(f"{where}: the time needs a zone, e.g. 2026-11-01T00:00:00Z")
    return moment


class _Compiler:
    def __init__(self, leaves: Mapping[str, Leaf], first_param: int) -> None:
        self.leaves = leaves
        self.params: list[Any] = []
        self.first = first_param
        self.nodes = 0

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}"

    def compile(self, node: Any, path: str, depth: int) -> str:
        self.nodes += 1
        if depth > FILTER_DEPTH_MAX:
            raise FilterError(f"{path}: filter nests deeper than {FILTER_DEPTH_MAX} levels")
        if self.nodes > FILTER_NODES_MAX:
            raise FilterError(f"filter has more than {FILTER_NODES_MAX} conditions")
        if not isinstance(node, dict) or len(node) != 1:
            raise FilterError(
                f"{path}: each condition is an object with exactly one key "
                f"(and, or, not, {', '.join(self.leaves)})"
            )
        ((key, value),) = node.items()
        where = f"{path}.{key}"
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{where}: expects a non-empty list of conditions")
            parts = [self.compile(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
            return "(" + f" {key.upper()} ".join(parts) + ")"
        if key == "not":
            return f"(NOT {self.compile(value, where, depth + 1)})"
        leaf = self.leaves.get(key)
        if leaf is None:
            raise FilterError(
                f"{where}: unknown condition; use one of and, or, not, {', '.join(self.leaves)}"
            )
        bound = leaf_value(key, leaf, value, where)
        if leaf.kind == "object":
            bound = msgspec.json.encode(bound).decode()
        if leaf.kind == "strings":
            one = len(bound) == 1
            test = f"= {self.bind(bound[0])}" if one else f"= ANY({self.bind(bound)}::text[])"
            return "(" + leaf.sql.format(test) + ")"
        return "(" + leaf.sql.format(self.bind(bound)) + ")"


def compile_filter(
    where: Any, first_param: int = 1, leaves: Mapping[str, Leaf] = FLOW_LEAVES
) -> tuple[str, list[Any]]:
    """SQL boolean expression and its parameters (numbered from `first_param`), over flows
    (`FLOW_LEAVES`, the default) or tasks (`TASK_LEAVES`)."""
    if where is None:
        return "TRUE", []
    compiler = _Compiler(leaves, first_param)
    return compiler.compile(where, "$.where", 0), compiler.params

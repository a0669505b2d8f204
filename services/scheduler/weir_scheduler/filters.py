"""The flow query language: a JSON filter compiled to parameterised, parenthesised SQL.

```json
{"and": [{"status": ["failed", "cancelled"]},
         {"or": [{"tags_any": ["nightly"]}, {"not": {"name": "etl"}}]},
         {"created_after": "2026-11-01T00:00:00Z"}]}
```

Leaves: `status` (one or a list), `name`, `tags_all`, `tags_any`, `metadata` (object:
equality by containment), `created_after`, `created_before`, `finished_after`,
`finished_before`. Combinators: `and`, `or` (lists), `not`. Values are always bound
parameters; every combinator is wrapped in parentheses, so `a OR b AND c` can never happen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from weir_proto.errors import WeirException

FILTER_DEPTH_MAX = 16
FILTER_NODES_MAX = 200

_TIME_COLUMNS = {
    "created_after": ("created_at", ">"),
    "created_before": ("created_at", "<"),
    "finished_after": ("finished_at", ">"),
    "finished_before": ("finished_at", "<"),
}
LEAVES = ("status", "name", "tags_all", "tags_any", "metadata", *_TIME_COLUMNS)


class FilterError(WeirException, ValueError):
    """The filter is not valid; the message names the path and what is expected."""


class _Compiler:
    def __init__(self, first_param: int) -> None:
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
                f"(and, or, not, {', '.join(LEAVES)})"
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
        if key == "status":
            statuses = value if isinstance(value, list) else [value]
            if not statuses or not all(isinstance(s, str) for s in statuses):
                raise FilterError(f"{where}: expects a status or a list of statuses")
            return f"(status = ANY({self.bind(statuses)}::text[]))"
        if key == "name":
            if not isinstance(value, str):
                raise FilterError(f"{where}: expects a string")
            return f"(name = {self.bind(value)})"
        if key in ("tags_all", "tags_any"):
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise FilterError(f"{where}: expects a list of tags")
            operator = "@>" if key == "tags_all" else "&&"
            return f"(tags {operator} {self.bind(value)}::text[])"
        if key == "metadata":
            if not isinstance(value, dict) or not value:
                raise FilterError(f"{where}: expects an object of key: value pairs")
            encoded = msgspec.json.encode(value).decode()
            return f"(metadata @> {self.bind(encoded)}::jsonb)"
        if key in _TIME_COLUMNS:
            column, operator = _TIME_COLUMNS[key]
            try:
                moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                raise FilterError(
                    f"{where}: expects an ISO 8601 time, e.g. 2026-11-01T00:00:00Z"
                ) from None
            if moment.tzinfo is None:
                raise FilterError(f"{where}: the time needs a zone, e.g. 2026-11-01T00:00:00Z")
            return f"({column} {operator} {self.bind(moment)})"
        raise FilterError(
            f"{where}: unknown condition; use one of and, or, not, {', '.join(LEAVES)}"
        )


def compile_filter(where: Any, first_param: int = 1) -> tuple[str, list[Any]]:
    """SQL boolean expression and its parameters (numbered from `first_param`)."""
    if where is None:
        return "TRUE", []
    compiler = _Compiler(first_param)
    return compiler.compile(where, "$.where", 0), compiler.params

"""`queries.sql` loaded by name: the only place the scheduler's SQL lives.

A statement that writes rows in bulk names their row type (see rows.py) instead of listing
columns: `:FlowRow.columns` becomes `id, name, ...` and `:FlowRow.record` becomes
`id text, name text, ...` (a `jsonb_to_recordset` column list). A status set of
`weir_proto.status` named in capitals (`:ACTIVE_TASK_STATUSES`) becomes its values as a list
(`('dispatched', 'running')`), so the statuses a query counts are those the code means, and
stay literal for the planner (a partial index's predicate). Only structure is expanded, once,
at import; values are always bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources

from weir_proto.status import ACTIVE_TASK_STATUSES, UNENDED_FLOW_STATUSES

from weir_scheduler.data.rows import BULK_ROWS, record_columns

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_ROW_REFERENCE = re.compile(r"(?<!:):([A-Z]\w*)\.(columns|record)\b")
_SET_REFERENCE = re.compile(r"(?<!:):([A-Z][A-Z_]*)\b(?!\.)")
STATUS_SETS: Mapping[str, frozenset[str]] = {
    "ACTIVE_TASK_STATUSES": ACTIVE_TASK_STATUSES,
    "UNENDED_FLOW_STATUSES": UNENDED_FLOW_STATUSES,
}
"""The status sets a query may name, from the enums (`weir_proto.status`)."""


def _expand(name: str, sql: str) -> str:
    def replace(match: re.Match[str]) -> str:
        row_type = BULK_ROWS.get(match[1])
        if row_type is None:
            raise ValueError(f"query {name}: unknown row type {match[1]} (see rows.BULK_ROWS)")
        columns = record_columns(row_type)
        if match[2] == "columns":
            return ", ".join(column for column, _ in columns)
        return ", ".join(f"{column} {pg_type}" for column, pg_type in columns)

    def status_list(match: re.Match[str]) -> str:
        statuses = STATUS_SETS.get(match[1])
        if statuses is None:
            raise ValueError(f"query {name}: unknown status set {match[1]} (see STATUS_SETS)")
        return "(" + ", ".join(f"'{status}'" for status in sorted(statuses)) + ")"

    return _SET_REFERENCE.sub(status_list, _ROW_REFERENCE.sub(replace, sql))


def parse(text: str) -> dict[str, str]:
    """Statements by name from the text of a queries file."""
    parts = _HEADER.split(text)
    return {parts[i]: _expand(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)}


QUERIES: Mapping[str, str] = parse(
    resources.files("weir_scheduler.data").joinpath("queries.sql").read_text()
)

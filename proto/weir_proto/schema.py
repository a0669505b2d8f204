"""Generate `proto/schema/*.json` (JSON Schema) from the msgspec types.

Run `python -m weir_proto.schema proto/schema` (or `./just schema`); a test fails when the
files drift from the types, so a client in any language can trust them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from weir_proto import api, events, messages, spec
from weir_proto.durations import DURATION_PATTERN, EXAMPLES

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

PUBLIC_MESSAGES: dict[str, Any] = {
    "FlowSpec": spec.FlowSpec,
    "FlowEvent": events.FlowEvent,
    "Dispatch": messages.Dispatch,
    "AttemptStatus": messages.AttemptStatus,
    "GetRequest": api.GetRequest,
    "ListRequest": api.ListRequest,
    "CancelRequest": api.CancelRequest,
    "RerunRequest": api.RerunRequest,
    "RetryRequest": api.RetryRequest,
    "PauseRequest": api.PauseRequest,
    "UpdateRequest": api.UpdateRequest,
    "Stepped": api.Stepped,
    "AttemptRequest": api.AttemptRequest,
    "AttemptAnswer": api.AttemptAnswer,
    "FlowState": api.FlowState,
    "Heartbeat": messages.Heartbeat,
    "QueryRequest": api.QueryRequest,
    "TaskQueryRequest": api.TaskQueryRequest,
    "TaskPage": api.TaskPage,
    "PruneRequest": api.PruneRequest,
    "PruneResult": api.PruneResult,
    "ScheduleRequest": api.ScheduleRequest,
    "ScheduleName": api.ScheduleName,
    "SecretName": api.SecretName,
    "SecretPut": api.SecretPut,
    "SecretList": api.SecretList,
    "ScheduleView": api.ScheduleView,
    "ScheduleList": api.ScheduleList,
    "FlowView": api.FlowView,
    "FlowPage": api.FlowPage,
    "SubmitAccepted": api.SubmitAccepted,
    "Reply": api.Reply,
}


def _plain_descriptions(node: Any) -> Any:
    """The schema with every description's lines stripped of their indentation.

    msgspec copies docstrings into descriptions and its releases disagree on how they keep
    indentation (0.23 dedents continuation lines, 0.22 did not); the files must depend only on
    the types, never on which release rendered them.
    """
    if isinstance(node, dict):
        return {
            key: (
                "\n".join(line.strip() for line in value.splitlines())
                if key == "description" and isinstance(value, str)
                else _plain_descriptions(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_plain_descriptions(item) for item in node]
    return node


WRITTEN_BY_PEOPLE = {"FlowSpec"}
"""Messages whose schema describes the shorthands a person may write (read by
`weir_proto.validation` on every submit): a `Duration` as `10m`, `retry` as a number of
attempts. Every other message (events,
dispatches, replies) only ever carries the canonical form: seconds, a retry object."""


def _canonical_forms(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _canonical_forms(v) for k, v in node.items() if k != "x-weir-form"}
    if isinstance(node, list):
        return [_canonical_forms(item) for item in node]
    return node


def _accepted_forms(node: Any) -> Any:
    """The schema with the shorthands the validator reads spelt out."""
    if isinstance(node, dict):
        if node.get("x-weir-form") == spec.DURATION_FORM:
            rest = {k: v for k, v in node.items() if k not in ("x-weir-form", "type")}
            return {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": DURATION_PATTERN},
                ],
                **rest,
                "description": f"Seconds: {EXAMPLES}.",
            }
        if {"$ref": "#/$defs/RetryPolicy"} in node.get("anyOf", []):
            shorthand = {
                "type": "integer",
                "description": "Shorthand for {max_attempts: n}.",
            }
            return {**node, "anyOf": [shorthand, *node["anyOf"]]}
        return {key: _accepted_forms(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_accepted_forms(item) for item in node]
    return node


def render() -> dict[str, str]:
    """File name -> JSON text for every public message."""
    files = {}
    for name, kind in PUBLIC_MESSAGES.items():
        schema = _plain_descriptions(msgspec.json.schema(kind))
        forms = _accepted_forms if name in WRITTEN_BY_PEOPLE else _canonical_forms
        schema = forms(schema)
        schema = {"$schema": JSON_SCHEMA_DIALECT, "title": name, **schema}
        files[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "proto/schema")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (target / name).write_text(text)
    print(f"wrote {len(PUBLIC_MESSAGES)} schema files to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Reading a flow spec file (YAML or JSON) as `weir submit` and `weir schedule create` do.

A file is checked completely before anything is sent: a YAML syntax error is one line
(file, line, column, what), every structural problem of the spec is listed (the same
messages the scheduler would record, from `weir_proto.validation`), and YAML aliases may not
expand a small file into a huge document (a few hundred bytes of nested `*alias` references
can stand for billions of values).
"""

from __future__ import annotations

from typing import Any

import yaml
from weir_proto.errors import WeirException
from weir_proto.validation import check_flow

EXPANDED_BYTES_MAX = 16 * 1024 * 1024
"""Largest a document may become once its YAML aliases are expanded (as JSON, roughly): four
times the scheduler's default submit limit (WEIR_MAX_SUBMIT_BYTES, 4 MiB)."""


class SpecFileError(WeirException):
    """A spec file that cannot be submitted; `problems` lists every reason, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.source = source
        self.problems = problems


def load_spec_text(text: str, source: str) -> dict[str, Any]:
    """The spec in `text` as plain JSON values in canonical form (durations in seconds,
    `retry: 3` as an object). Raises `SpecFileError` naming `source` in every problem."""
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise SpecFileError(source, [_syntax_error(source, exc)]) from None
    except yaml.YAMLError as exc:
        raise SpecFileError(source, [f"{source}: not valid YAML or JSON: {exc}"]) from None
    except RecursionError:
        raise SpecFileError(source, [f"{source}: nests too deeply to be a flow spec"]) from None
    _refuse_expansion(doc, source)
    if not isinstance(doc, dict):
        raise SpecFileError(
            source, [f"{source}: must hold a mapping with name and tasks, not {_kind(doc)}"]
        )
    checked = check_flow(doc)
    if checked.errors:
        raise SpecFileError(source, [e.message for e in checked.errors])
    value: dict[str, Any] = checked.value
    return value


def _syntax_error(source: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    what = exc.problem or "cannot parse"
    if exc.context:
        started = exc.context_mark
        at = f" (from line {started.line + 1}, column {started.column + 1})" if started else ""
        what = f"{exc.context}{at}: {what}"
    return f"{where}: YAML syntax error: {' '.join(what.split())}"


def _refuse_expansion(doc: object, source: str) -> None:
    """Refuse a document whose aliases expand it past `EXPANDED_BYTES_MAX`, or that refers to
    itself (`&a [*a]`), before anything walks it value by value.

    The loader shares one object for every use of an anchor, so the size is computed once per
    distinct object (a DAG walk, linear in the file) and summed over its uses."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[object, bool]] = [(doc, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        if children_done:
            on_path.discard(key)
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            size = 2 + sum(sizes.get(id(i), _leaf_size(i)) + 1 for i in items)
            if size > EXPANDED_BYTES_MAX:
                raise SpecFileError(
                    source,
                    [
                        f"{source}: its YAML aliases (*name) expand it to more than "
                        f"{EXPANDED_BYTES_MAX // (1024 * 1024)} MiB; write the values out "
                        "or use fewer nested aliases"
                    ],
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise SpecFileError(
                source, [f"{source}: a YAML alias refers to a value that contains it"]
            )
        on_path.add(key)
        stack.append((node, True))
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        stack.extend((item, False) for item in items if isinstance(item, dict | list))


def _leaf_size(value: object) -> int:
    return len(value) + 2 if isinstance(value, str) else 8


def _kind(value: object) -> str:
    if value is None:
        return "nothing (the file is empty)"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__

"""What the CLI prints, in one place: text that came from users and tasks (flow and task
names, error messages, reasons) always as plain `rich.text.Text`, never parsed as markup;
statuses in their colours; errors as one line on stderr.

Nothing else in the CLI builds markup strings around such text, so `plain` is where it is
made safe to show.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

out = Console()
err = Console(stderr=True)

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "rejected": "red",
    "running": "cyan",
    "dispatched": "blue",
    "queued": "blue",
    "scheduled": "blue",
    "pending": "dim",
    "retrying": "yellow",
    "skipped": "yellow",
    "cancelling": "yellow",
    "cancelled": "yellow",
    "duplicate": "yellow",
}
"""Colours of flow and task statuses; a status not listed here is shown uncoloured."""


def plain(value: object, style: str = "") -> Text:
    """`value` as text shown exactly as it is (brackets and all)."""
    return Text(str(value), style=style)


def status(value: str) -> Text:
    return plain(value, STATUS_STYLE.get(value, ""))


def line(*parts: Text | str) -> Text:
    """One line from pieces: `Text` keeps its style, `str` is shown as it is."""
    return Text.assemble(*(part if isinstance(part, Text) else plain(part) for part in parts))


def say(*parts: Text | str) -> None:
    """A line on stdout."""
    out.print(line(*parts), highlight=False, soft_wrap=True)


def note(*parts: Text | str) -> None:
    """A line on stderr that is not an error (progress, an empty result)."""
    err.print(line(*parts), highlight=False, soft_wrap=True)


def error(message: str, details: Iterable[str] = ()) -> None:
    """`error: message` on stderr, then one indented line per detail."""
    err.print(line(plain("error:", "red"), " ", message), highlight=False, soft_wrap=True)
    for detail in details:
        err.print(line("  - ", detail), highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1, details: Iterable[str] = ()) -> NoReturn:
    """Print the error and end the command with exit status `code`."""
    error(message, details)
    raise typer.Exit(code)

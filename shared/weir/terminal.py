"""What the CLI prints, in one place: text that came from users and tasks (flow and task
names, error messages, reasons) always as plain `rich.text.Text`, never parsed as markup and
with its control characters escaped; statuses in their colours; errors as one line on stderr.

Nothing else in the CLI builds markup strings around such text, so `plain` is where it is
made safe to show. `--json` output is not made here: JSON escaping keeps it exact.
"""

from __future__ import annotations

import itertools
import re
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
    "paused": "yellow",
    "cancelling": "yellow",
    "cancelled": "yellow",
    "duplicate": "yellow",
}
"""Colours of flow and task statuses; a status not listed here is shown uncoloured."""


_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
"""Every character of the Unicode categories Cc (C0, DEL, C1 controls: ESC starts terminal
escape sequences, U+009B is a one-byte CSI), Cf (format: bidi overrides and isolates that
reorder what is shown, zero-width characters, tag characters) and Zl/Zp (line and paragraph
separators). tests/unit/test_terminal.py checks the list against `unicodedata`."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every control, format and separator character written as `\\xNN`,
    `\\uNNNN` or `\\UNNNNNNNN`, so that text from a task or a user cannot move the cursor,
    retitle or clear the terminal, hide or reorder what is shown, or forge lines. Characters
    in `keep` (e.g. newline and tab for a log) stay as they are."""
    if keep:
        return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)
    return _UNSAFE.sub(_escape, text)


def plain(value: object, style: str = "") -> Text:
    """`value` as text shown as it is (brackets and all), its control characters escaped."""
    return Text(escape_controls(str(value)), style=style)


def escape_text(text: Text, keep: str = "") -> Text:
    """`text` made elsewhere (a drawing with user text in it), its styles kept and its
    control characters escaped like `escape_controls`."""
    cuts = sorted({0, len(text), *(s.start for s in text.spans), *(s.end for s in text.spans)})
    shown = Text(style=text.style, end=text.end, no_wrap=text.no_wrap, overflow=text.overflow)
    for start, end in itertools.pairwise(cuts):
        piece = text[start:end]
        escaped = Text(escape_controls(piece.plain, keep))
        for span in piece.spans:  # each covers the whole piece: it lies between two cuts
            escaped.stylize(span.style)
        shown.append_text(escaped)
    return shown


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

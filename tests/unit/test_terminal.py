"""Text from tasks and users reaches a terminal with its control characters escaped; an
artifact's default file name is a name in the current directory; NATS secrets come from
files."""

from __future__ import annotations

import io
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from weir import waterfall
from weir.cli.artifacts import file_name_for
from weir.cli.output import LogOutput, event_line, flow_details
from weir.config import ConfigError, NatsSecurity
from weir.terminal import escape_controls, escape_text, plain
from weir_proto.api import TaskView
from weir_proto.errors import SpecError
from weir_proto.events import FlowEvent, FlowRejected, TaskFailed
from weir_proto.messages import ErrorType

from tests.flows import flow_view

ATTACK = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eexe.txt\u2066\u200b\u2028\U000e0041 done"
UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def test_every_control_format_and_separator_character_is_escaped() -> None:
    unsafe = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in UNSAFE_CATEGORIES
    ]
    assert len(unsafe) > 200
    for char in unsafe:
        shown = escape_controls(char)
        assert shown.startswith("\\") and shown.isascii(), (hex(ord(char)), shown)


@pytest.mark.parametrize(
    "text", ["plain [bold]text[/]", "é中文 العربية", "emoji 🎉", "C:\\path\\x1b", "tab-free"]
)
def test_printable_text_is_shown_as_it_is(text: str) -> None:
    assert escape_controls(text) == text


def test_escapes_are_readable_and_kept_characters_stay() -> None:
    assert escape_controls(ATTACK) == (
        "\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\u202eexe.txt\\u2066\\u200b\\u2028\\U000e0041 done"
    )
    assert escape_controls("a\tb\nc\rd\x1b", keep="\n\t") == "a\tb\nc\\x0dd\\x1b"


def render(*parts: object) -> str:
    console = Console(file=io.StringIO(), width=300, color_system="truecolor")
    for part in parts:
        console.print(part, highlight=False, soft_wrap=True)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def assert_no_raw_controls(output: str) -> None:
    # Colours are the console's own SGR sequences (ESC [ ... m); nothing else may pass.
    without_colours = re.sub(r"\x1b\[[0-9;]*m", "", output)
    for char in ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\u200b", "\u2028", "\U000e0041"):
        assert char not in without_colours, (repr(char), without_colours)


def test_show_and_events_escape_task_text() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    evil = TaskView(
        name="evil", status="failed", attempt=1, queue="default", depends=[], error_message=ATTACK
    )
    view = flow_view([evil], now, id="f1", name="nightly\x9b", seq=3, tags=["t\u202eag"])
    shown = render(*flow_details(view))
    assert_no_raw_controls(shown)
    assert "\\x1b]0;PWNED\\x07" in shown and "nightly\\x9b" in shown and "t\\u202eag" in shown
    event = TaskFailed(
        id="e3",
        flow_id="f1",
        seq=3,
        at=now,
        task="evil",
        attempt=1,
        error_type=ErrorType.EXIT_CODE,
        message=ATTACK,
    )
    line = render(event_line(event))
    assert_no_raw_controls(line)
    assert "\\x1b[2J" in line
    assert plain(ATTACK).plain == escape_controls(ATTACK)


class Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_logs_are_escaped_on_a_terminal_and_exact_elsewhere() -> None:
    data = "line one\n\tindented \x1b[2J é\u202e\n".encode()
    terminal, redirected = Terminal(), io.BytesIO()
    escaped, exact = LogOutput(terminal, raw=False), LogOutput(redirected, raw=False)
    raw = LogOutput(raw_terminal := Terminal(), raw=True)
    for index in range(len(data)):  # one byte at a time: characters split between chunks
        for output in (escaped, exact, raw):
            output.write(data[index : index + 1])
    for output in (escaped, exact, raw):
        output.write(b"", final=True)
    assert terminal.getvalue().decode() == "line one\n\tindented \\x1b[2J é\\u202e\n"
    assert redirected.getvalue() == data
    assert raw_terminal.getvalue() == data


@pytest.mark.parametrize(
    ("stored", "written"),
    [
        ("report.csv", "report.csv"),
        ("../../.bashrc", "artifact_.._.bashrc"),
        ("/etc/passwd", "artifact_etc_passwd"),
        ("..", "artifact"),
        (".hidden", "hidden"),
        ("a/b", "a_b"),
        ("esc\x1b[2J", "esc__2J"),
        ("x" * 300, "x" * 128),
    ],
)
def test_default_file_name_of_an_artifact_is_a_name_here(stored: str, written: str) -> None:
    assert file_name_for(stored) == written
    assert Path(written).name == written and not written.startswith(".")


def test_nats_password_and_token_from_files(tmp_path: Path) -> None:
    password, token = tmp_path / "password", tmp_path / "token"
    password.write_text("s3cret\n")
    token.write_text("tok")
    security = NatsSecurity.from_env(
        {"WEIR_NATS_USER": "ci", "WEIR_NATS_PASSWORD_FILE": str(password)}
    )
    assert (security.user, security.password) == ("ci", "s3cret")
    assert NatsSecurity.from_env({"WEIR_NATS_TOKEN_FILE": str(token)}).token == "tok"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"WEIR_NATS_USER": "u", "WEIR_NATS_PASSWORD": "p", "WEIR_NATS_PASSWORD_FILE": "{f}"},
            "WEIR_NATS_PASSWORD and WEIR_NATS_PASSWORD_FILE are both set",
        ),
        ({"WEIR_NATS_TOKEN_FILE": "{d}/missing"}, "cannot be read: No such file"),
        ({"WEIR_NATS_TOKEN_FILE": "{d}/empty"}, "must hold one line"),
        ({"WEIR_NATS_TOKEN_FILE": "{d}/two-lines"}, "must hold one line"),
        ({"WEIR_NATS_PASSWORD_FILE": "{f}"}, "WEIR_NATS_PASSWORD is set without WEIR_NATS_USER"),
    ],
)
def test_bad_secret_files_are_named(tmp_path: Path, env: dict[str, str], words: str) -> None:
    (tmp_path / "password").write_text("pw")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two-lines").write_text("a\nb\n")
    filled = {k: v.format(f=tmp_path / "password", d=tmp_path) for k, v in env.items()}
    with pytest.raises(ConfigError, match=words):
        NatsSecurity.from_env(filled)


def test_trace_drawing_escapes_the_flow_name_and_keeps_its_colours() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    # The planner refuses such a name, so it reaches a trace as the name of a rejected flow.
    errors = [SpecError(path="$.name", message="name must be at most 253 characters")]
    history: list[FlowEvent] = [
        FlowRejected(id="f.1", seq=1, flow_id="f", at=at, errors=errors, name=ATTACK),
    ]
    drawing = waterfall.renderable(history, width=120, now=at + timedelta(seconds=5))
    shown = escape_text(drawing, keep="\n")
    assert shown.plain == escape_controls(drawing.plain, keep="\n")
    assert {str(span.style) for span in shown.spans} == {str(span.style) for span in drawing.spans}
    drawn = render(shown)
    assert_no_raw_controls(drawn)
    assert "flow \\x1b]0;PWNED" in drawn and drawn.count("\n") == drawing.plain.count("\n") + 1

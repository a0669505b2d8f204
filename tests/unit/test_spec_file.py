"""Reading a spec file as `weir submit` does: one clear line per problem, every problem at
once, no markup, a non-zero exit, and no YAML alias bomb."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from weir.spec_file import SpecFileError, load_spec_text

BOMB = "\n".join(
    [
        "name: bomb",
        "tasks: [{name: a, cmd: [echo]}]",
        "metadata:",  # any value is valid metadata: only the expansion can stop it
        '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"  {name}: &{name} [{','.join([f'*{prev}'] * 9)}]"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)

EIGHT_MISTAKES = textwrap.dedent(
    """\
    name: etl
    priority: high
    colour: blue
    tasks:
      - name: extract
        cmd: [echo]
        timeout: 10x
        retry: {backoff: {strategy: exponentail}}
      - name: transform
        cmd: echo hi
        kubernetes: {nodeselector: {}}
      - name: load
        cmd: [x]
        env: [{name: A, value: 7}]
        retires: 3
    """
)


def weir(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; these commands stop before they would reach NATS."""
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args, "--nats-url", "nats://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        check=False,
    )


def test_shorthands_are_read_as_the_sdk_reads_them() -> None:
    doc = load_spec_text(
        "name: a\ndefaults: {timeout: 2h}\ntasks: [{name: a, cmd: [x], retry: 3, timeout: 10m}]",
        "flow.yaml",
    )
    assert doc["defaults"] == {"timeout": 7200.0}
    assert doc["tasks"][0]["retry"] == {"max_attempts": 3}
    assert doc["tasks"][0]["timeout"] == 600.0


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column() -> None:
    with pytest.raises(SpecFileError) as raised:
        load_spec_text("name: x\ntasks:\n  - name: a\n    cmd: [echo\n", "flow.yaml")
    (problem,) = raised.value.problems
    assert problem.startswith("flow.yaml:5:1: YAML syntax error: while parsing a flow sequence")
    assert "(from line 4, column 10)" in problem and "expected ',' or ']'" in problem
    assert "\n" not in problem


def test_cli_prints_a_syntax_error_as_one_plain_line(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("name: x\ntasks: [\n")
    run = weir("submit", str(path))
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"error: {path}:3:1: YAML syntax error: ")
    assert "[red]" not in run.stderr and "Traceback" not in run.stderr


def test_cli_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(EIGHT_MISTAKES)
    run = weir("submit", str(path))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        f"error: {path}: 8 problems:",
        '  - flow "etl": priority: expected a whole number, got the string "high"',
        '  - flow "etl": colour: unknown field "colour"; remove it (valid fields: name, tasks, '
        "id, defaults, fail_fast, max_parallel, scheduled_at, delay, priority, tags, metadata, "
        "unique, params, arguments, on_exit; see docs/jobs.md)",
        '  - flow "etl": task "extract": timeout: \'10x\' is not a duration: give a number of '
        "seconds or a string like 90s, 10m, 2h, 1d",
        '  - flow "etl": task "extract": retry.backoff.strategy: "exponentail" is not one of '
        "constant, linear, polynomial, exponential",
        '  - flow "etl": task "transform": cmd: expected a list of strings, got the string '
        '"echo hi"',
        '  - flow "etl": task "transform": kubernetes.nodeselector: unknown field '
        '"nodeselector"; remove it (valid fields: resources, nodeSelector, tolerations, '
        "serviceAccountName, imagePullSecrets, labels, annotations, runAsNonRoot, runAsUser, "
        "automountServiceAccountToken; see docs/kubernetes.md)",
        '  - flow "etl": task "load": env[0].value: expected a string, got the number 7',
        '  - flow "etl": task "load": retires: unknown field "retires"; remove it (valid '
        "fields: name, cmd, image, depends, env, inputs, outputs, queue, timeout, retry, "
        "priority, kubernetes, trigger, when; see docs/jobs.md)",
    ]


def test_a_usage_error_is_told_as_such_with_exit_2() -> None:
    for args, problem in (
        (["flows", "--bogus"], "No such option: --bogus"),
        (["secret", "set", "name", "value"], "Got unexpected extra argument(s) (value)"),
    ):
        run = weir(*args)
        assert run.returncode == 2, run.stderr
        assert problem in run.stderr and "Usage:" in run.stderr
        assert "unexpected NoSuchOption" not in run.stderr and "Traceback" not in run.stderr


def test_schedule_create_checks_the_file_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(EIGHT_MISTAKES)
    run = weir("schedule", "create", "nightly", str(path), "--cron", "0 3 * * *")
    assert run.returncode == 2
    assert run.stderr.splitlines()[0] == f"error: {path}: 8 problems:"


def test_a_self_referencing_alias_is_refused() -> None:
    with pytest.raises(SpecFileError) as raised:
        load_spec_text("name: x\ntasks: &t [{name: a, cmd: *t}]\n", "flow.yaml")
    assert raised.value.problems == ["flow.yaml: a YAML alias refers to a value that contains it"]


def test_an_alias_bomb_is_refused_within_a_small_memory_and_time_bound(tmp_path: Path) -> None:
    """A few hundred bytes of nested aliases used to make `weir submit` reach 2.3 GB and
    crash while encoding the expanded document."""
    assert len(BOMB) < 600
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    bounded = (  # load the file as `weir submit` does, then encode it as the client does
        "import resource, sys, msgspec\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))\n"
        "from weir.spec_file import SpecFileError, load_spec_text\n"
        "try:\n"
        "    doc = load_spec_text(open(sys.argv[1]).read(), sys.argv[1])\n"
        "except SpecFileError as exc:\n"
        "    sys.exit('\\n'.join(exc.problems))\n"
        "msgspec.json.encode(doc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", bounded, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    assert run.stderr == (
        f"{path}: its YAML aliases (*name) expand it to more than 16 MiB; "
        "write the values out or use fewer nested aliases\n"
    )
    cli = weir("submit", str(path))
    assert cli.returncode == 2 and cli.stderr == f"error: {run.stderr}"


def test_ordinary_anchors_and_merges_still_work() -> None:
    doc = load_spec_text(
        textwrap.dedent(
            """\
            name: etl
            tasks:
              - &base {name: a, cmd: [echo], timeout: 5m, env: [{name: X, value: "1"}]}
              - {<<: *base, name: b}
            """
        ),
        "flow.yaml",
    )
    assert [t["name"] for t in doc["tasks"]] == ["a", "b"]
    assert doc["tasks"][1]["timeout"] == 300.0

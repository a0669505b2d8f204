"""The checker itself: it must see overlapping executions and runs that vanished."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.checker import overlaps, read_trail


def _trail(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "trail.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_checker_sees_an_attempt_starting_while_another_runs(tmp_path: Path) -> None:
    runs = read_trail(
        _trail(
            tmp_path,
            [
                "start f a 1 100 10.0",
                "start f a 2 200 10.5",  # inside attempt 1's run
                "end f a 2 200 10.7",
                "end f a 1 100 12.0",
                "start f b 1 300 10.0",
                "end f b 1 300 11.0",
                "start f b 2 301 11.5",  # after: fine
                "end f b 2 301 12.0",
            ],
        )
    )
    problems = overlaps(runs, runner_kills=[])
    assert len(problems) == 1 and "task a attempt 2" in problems[0]


def test_checker_bounds_a_killed_run_by_the_next_runner_kill(tmp_path: Path) -> None:
    runs = read_trail(
        _trail(
            tmp_path,
            [
                "start f a 1 100 10.0",  # killed with its runner at 11.0
                "start f a 1 200 13.0",  # redelivered after the kill: fine
                "end f a 1 200 14.0",
                "start f c 1 400 20.0",  # never ended and no kill after it
                "start f d 1 500 10.0",
                "start f d 1 501 10.5",  # before the kill at 11.0: ran concurrently
                "end f d 1 501 12.0",
            ],
        )
    )
    problems = overlaps(runs, runner_kills=[11.0])
    assert any("task c" in p and "never ended" in p for p in problems)
    assert any("task d" in p for p in problems)
    assert not any("task a" in p for p in problems)

"""`weir`: submit flows, list and show them, follow their events.

One module per concern: `entry` (the command, its NATS options, connecting, the entry point),
`submit` (reading specs and submitting them), `flows` (asking about and acting on flows),
`stepping` (retry, pause, resume, update),
`schedules`, `artifacts`, `secrets`, and `output` (how results are printed)."""

from __future__ import annotations

from weir.cli import flows, stepping, submit
from weir.cli.artifacts import artifacts_app
from weir.cli.entry import app, main
from weir.cli.schedules import schedule_app
from weir.cli.secrets import secret_app

# In the order `weir --help` lists them.
for _command in (
    submit.submit,
    flows.flows,
    flows.tasks,
    flows.show,
    flows.events,
    flows.cancel,
    flows.rerun,
    stepping.retry,
    stepping.pause,
    stepping.resume,
    stepping.update,
    flows.prune,
    flows.logs,
    flows.trace,
):
    app.command()(_command)
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(secret_app, name="secret")
app.add_typer(schedule_app, name="schedule")

__all__ = ["app", "main"]

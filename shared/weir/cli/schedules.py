"""`weir schedule …`: cron schedules that run a flow at every tick."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from rich.table import Table
from weir_proto.api import ScheduleRequest
from weir_proto.spec import FlowSpec

from weir.cli.entry import Json, NatsUrl, print_json, run
from weir.cli.submit import load_spec
from weir.config import NATS_URL_DEFAULT
from weir.terminal import out, plain, say

schedule_app = typer.Typer(help="Cron schedules: run a flow at every tick.", no_args_is_help=True)


@schedule_app.command("create")
def schedule_create(
    name: Annotated[str, typer.Argument(help="Schedule name (DNS-1123 label, <= 40 chars).")],
    file: Annotated[str, typer.Argument(help="Flow spec, YAML or JSON.")],
    cron: Annotated[str, typer.Option("--cron", help="Cron expression, e.g. '0 3 * * *'.")],
    timezone: Annotated[
        str, typer.Option("--tz", help="Time zone of the cron expression.")
    ] = "UTC",
    catch_up: Annotated[
        bool, typer.Option("--catch-up", help="Run every missed tick (default: only the last).")
    ] = False,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Create or replace a schedule."""
    flow = msgspec.convert(load_spec(file), FlowSpec)
    request = ScheduleRequest(
        name=name,
        cron=cron,
        flow=flow,
        timezone=timezone,
        missed="catch_up" if catch_up else "skip",
        paused=paused,
    )
    view = run(nats_url, lambda client: client.schedule(request))
    if as_json:
        print_json(view)
    else:
        say(view.name, f": next run {view.next_run_at:%Y-%m-%d %H:%M:%S} UTC")


@schedule_app.command("list")
def schedule_list(nats_url: NatsUrl = NATS_URL_DEFAULT, as_json: Json = False) -> None:
    """List schedules."""
    rows = run(nats_url, lambda client: client.schedules())
    if as_json:
        print_json(rows)
        return
    table = Table("NAME", "CRON", "TZ", "FLOW", "STATE", "NEXT RUN (UTC)", "LAST TICK")
    for s in rows:
        table.add_row(
            plain(s.name),
            plain(s.cron),
            plain(s.timezone),
            plain(s.flow_name),
            "paused" if s.paused else "active",
            f"{s.next_run_at:%Y-%m-%d %H:%M:%S}",
            f"{s.last_tick_at:%Y-%m-%d %H:%M:%S}" if s.last_tick_at else "-",
        )
    out.print(table)


def _schedule_verb(verb: str) -> None:
    @schedule_app.command(verb, help=f"{verb.capitalize()} a schedule.")
    def command(
        name: Annotated[str, typer.Argument(help="Schedule name.")],
        nats_url: NatsUrl = NATS_URL_DEFAULT,
        as_json: Json = False,
    ) -> None:
        result = run(nats_url, lambda client: client.schedule_action(verb, name))
        print_json(result) if as_json else say(name, f": {verb}d")


for _verb in ("pause", "resume", "delete"):
    _schedule_verb(_verb)

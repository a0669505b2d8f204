"""`flow.main()`: the command line of a flow file (`python etl.py --help`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import msgspec
import yaml
from weir_proto.events import event_type
from weir_proto.spec import FlowSpec
from weir_proto.status import TaskStatus

from weir.client import Client, WeirError
from weir.config import NATS_URL_DEFAULT
from weir.sdk.checks import FlowDefinitionError
from weir.sdk.flow import Flow
from weir.sdk.params import ParamsError

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_INVALID = 2
LOCAL_REPR_MAX = 200
"""`--local` prints each result's repr cut to this many characters."""


def parser_for(flow: Flow) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f'Build the weir flow "{flow.name}" and submit it.',
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the flow spec instead of submitting it"
    )
    parser.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="--dry-run output format"
    )
    parser.add_argument("--wait", action="store_true", help="wait for the flow to end")
    parser.add_argument(
        "--follow", action="store_true", help="print the flow's events until it ends"
    )
    parser.add_argument(
        "--local", action="store_true", help="run every task in this process (no services)"
    )
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("WEIR_NATS_URL", NATS_URL_DEFAULT),
        help="NATS server (default: $WEIR_NATS_URL or %(default)s)",
    )
    parser.add_argument("--id", dest="flow_id", help="flow id (DNS-1123 label) to submit under")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a value for one of the flow's params (repeat for several)",
    )
    parser.add_argument(
        "--entrypoint", help="how task processes find this file (default: its absolute path)"
    )
    parser.add_argument(
        "--python", help="interpreter in each task's cmd (default: this one, sys.executable)"
    )
    return parser


def render(spec: FlowSpec, fmt: str) -> str:
    doc = msgspec.to_builtins(spec)
    if fmt == "json":
        return json.dumps(doc, indent=2)
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def run(flow: Flow, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: `sys.argv[1:]`) and act; returns the process exit code."""
    args = parser_for(flow).parse_args(argv)
    bad = [item for item in args.param if "=" not in item or not item.partition("=")[0]]
    if bad:
        for item in bad:
            print(f"error: -p {item}: expected NAME=VALUE", file=sys.stderr)
        return EXIT_INVALID
    params = dict(item.partition("=")[::2] for item in args.param)
    try:
        if args.local:
            return _run_locally(flow, params)
        spec = flow.spec(
            flow_id=args.flow_id,
            entrypoint=args.entrypoint,
            python=args.python,
            params=params if params or not args.dry_run else None,
        )
    except FlowDefinitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ParamsError as exc:
        for problem in exc.problems:
            print(f"error: {problem.message}", file=sys.stderr)
        return EXIT_INVALID
    if args.dry_run:
        print(render(spec, args.format), end="")
        return EXIT_OK
    try:
        return asyncio.run(_submit(spec, args.nats_url, args.wait, args.follow))
    except (WeirError, OSError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FLOW_FAILED


def _run_locally(flow: Flow, params: dict[str, str]) -> int:
    """`--local`: each succeeded task's value, the others with how they ended (a failure's
    traceback on stderr), then the flow's outcome."""
    outcome = flow.run_local_outcome(**params)
    for name, task in outcome.tasks.items():
        if name in outcome:
            shown = repr(outcome[name])
            if len(shown) > LOCAL_REPR_MAX:
                shown = shown[: LOCAL_REPR_MAX - 3] + "..."
            print(f"{name}: {shown}")
        elif task.status is not TaskStatus.SUCCEEDED:
            print(f"{name}: {task.status}: {task.reason}")
    for error in outcome.errors.values():
        traceback.print_exception(error, file=sys.stderr)
    print(f"flow {outcome.status}")
    return EXIT_OK if outcome.status == "succeeded" else EXIT_FLOW_FAILED


async def _submit(spec: FlowSpec, nats_url: str, wait: bool, follow: bool) -> int:
    async with await Client.connect(nats_url) as client:
        flow_id = await client.submit(spec)
        print(flow_id)
        if not (wait or follow):
            return EXIT_OK
        last: Any = None
        async for event in client.events(flow_id, follow=True):
            last = event
            if follow:
                print(_event_line(event), flush=True)
        outcome = event_type(last) if last is not None else "unknown"
        if not follow:
            print(outcome)
        return EXIT_OK if outcome == "flow_succeeded" else EXIT_FLOW_FAILED


def _event_line(event: Any) -> str:
    fields = {
        k: v
        for k, v in msgspec.to_builtins(event).items()
        if k not in ("id", "flow_id", "seq", "at", "type", "spec")
    }
    detail = "  ".join(f"{k}={v}" for k, v in fields.items())
    return f"#{event.seq:<4} {event_type(event):<15} {detail}".rstrip()

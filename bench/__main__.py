"""`python -m bench` (or `./just bench`): run the scenarios, write results, chart and README."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import combine_repeats, machine_info, package_versions, timestamp, write_results

SCENARIOS = (
    "throughput",
    "latency",
    "scale",
    "replicas",
    "soak",
    "peers",
    "artifacts",
    "web",
    "fanout",
    "skeleton",
)
PEERS = ("pgqueuer", "procrastinate")
HERE = Path(__file__).resolve().parent


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="weir benchmarks: throughput, latency, scale, peers side by side, and "
        "artifact transfers.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (smoke run)")
    p.add_argument("--only", action="append", choices=SCENARIOS, help="run only this (repeatable)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 3)")
    p.add_argument("--flows", type=int, default=None, help="single-task flows (default 20000)")
    p.add_argument("--wide", type=int, default=None, help="tasks in the wide flow (10000)")
    p.add_argument("--executors", default="noop,local", help="comma list of noop,local")
    p.add_argument("--samples", type=int, default=None, help="latency samples (default 100)")
    p.add_argument("--chain", type=int, default=None, help="chain length for step latency (200)")
    p.add_argument("--fan-sizes", type=_sizes, default=None, help="default 1000,5000,10000")
    p.add_argument("--chain-sizes", type=_sizes, default=None, help="default 1000,5000,10000")
    p.add_argument("--jobs", type=int, default=None, help="peer jobs (default 20000)")
    p.add_argument(
        "--soak-seconds", type=float, default=None, help="steady run length (600; quick 45)"
    )
    p.add_argument("--soak-rate", type=float, default=200.0, help="steady run flows/s (200)")
    p.add_argument(
        "--web-flows", type=int, default=None, help="flows in the log for GET /flows (20000)"
    )
    p.add_argument("--followers", type=int, default=200, help="SSE followers of one flow (200)")
    p.add_argument("--map-items", type=int, default=None, help="items to map over (10000)")
    p.add_argument("--artifact-mib", type=int, default=200, help="artifact size in MiB (200)")
    p.add_argument("--concurrency", type=int, default=32, help="runner/peer worker concurrency")
    p.add_argument("--log-level", default="WARNING", help="WEIR_LOG_LEVEL for the services")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run before giving up")
    p.add_argument(
        "--profile", action="store_true", help="run the scheduler and the runner under pyinstrument"
    )
    p.add_argument("--results-dir", type=Path, default=HERE / "results")
    p.add_argument(
        "--code",
        default="tree",
        help="weir code to measure: 'tree' (the working tree as installed, default) or a git "
        "revision such as HEAD, exported with `git archive` to a temporary directory",
    )
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="run nothing: redo the goal table, chart and (with --readme) README from a "
        "results file with the current report code",
    )
    p.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite bench/README.md (default: yes, except with --quick)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "repeats": 1 if quick else 3,
        "flows": 500 if quick else 20_000,
        "wide": 500 if quick else 10_000,
        "samples": 10 if quick else 100,
        "chain": 50 if quick else 200,
        "fan_sizes": [200, 1000] if quick else [1000, 5000, 10_000],
        "chain_sizes": [100, 300] if quick else [1000, 5000, 10_000],
        "jobs": 1000 if quick else 20_000,
        "soak_seconds": 45.0 if quick else 600.0,
        "web_flows": 1000 if quick else 20_000,
        "map_items": 500 if quick else 10_000,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.readme is None:
        args.readme = not quick
    args.only = args.only or list(SCENARIOS)
    args.executors = [e for e in args.executors.split(",") if e]
    return args


def run_peer(peer: str, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.peers",
        "--peer",
        peer,
        "--dsn",
        dsn,
        "--jobs",
        str(args.jobs),
        "--samples",
        str(args.samples),
        "--concurrency",
        str(args.concurrency),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=args.timeout * 3, cwd=HERE.parent, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{peer} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


CODE_DIRS = ("proto", "shared", "services/scheduler", "services/runner")


def _git(*args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(HERE.parent), *args], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def use_code(revision: str, into: Path) -> str:
    """Point this process and the services at weir's code; returns a description of it."""
    if revision == "tree":
        described = _git("describe", "--always", "--dirty")
        return f"working tree {described or '(not a git checkout)'}"
    sha = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    if not sha:
        raise SystemExit(f"--code {revision}: not a git revision of {HERE.parent}")
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", sha, *CODE_DIRS],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    paths = [str(into / d) for d in CODE_DIRS]
    sys.path[:0] = paths
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    return f"git {revision} = {sha}"


def render(path: Path, readme: bool) -> int:
    """The goal table, chart and README again from a results file (nothing is run)."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        combined = doc["results"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"--render {path}: not a bench results file ({exc})") from None
    doc["analysis"] = report.analyse(combined)
    doc["targets"] = report.targets(combined)
    write_results(path.parent, doc["stamp"], doc)
    chart = report.chart(combined, path.with_suffix(".png"), doc["stamp"])
    print(report.summary_text(doc))
    if readme:
        (HERE / "README.md").write_text(report.readme(doc, path, chart))
        print(f"readme:  {HERE / 'README.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.render is not None:
        return render(args.render, args.readme)

    # A SIGTERM ends the run as Ctrl-C does: through every `finally`, so the private Postgres,
    # NATS and services it started (each in a session of its own) are stopped, not left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stamp = timestamp()
    started = time.time()
    command = "./just bench" + ("" if not argv else " " + shlex.join(argv))
    print(f"weir bench {stamp}: {command}", flush=True)
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in args.only}
    profile_dir = args.results_dir / f"profile-{stamp}" if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="weir-bench-") as tmp:
        workdir = Path(tmp)
        code = use_code(args.code, workdir / "code")
        print(f"measuring {code}", flush=True)
        from bench import scenarios, skeleton
        from bench.weirstack import Cluster

        cluster = Cluster(workdir)
        cluster.start()
        ctx = scenarios.Context(
            cluster, workdir, args.concurrency, args.log_level, args.timeout, profile_dir
        )
        try:
            for rep in range(args.repeats):
                print(f"repeat {rep + 1}/{args.repeats}", flush=True)
                if "throughput" in args.only:
                    raw["throughput"].append(
                        scenarios.throughput(ctx, args.flows, args.wide, args.executors)
                    )
                if "latency" in args.only:
                    raw["latency"].append(scenarios.latency(ctx, args.samples, args.chain))
                if "scale" in args.only:
                    raw["scale"].append(scenarios.scale(ctx, args.fan_sizes, args.chain_sizes))
                if "replicas" in args.only:
                    raw["replicas"].append(scenarios.replicas(ctx, args.flows))
                if "soak" in args.only:
                    raw["soak"].append(scenarios.soak(ctx, args.soak_seconds, args.soak_rate))
                if "artifacts" in args.only:
                    raw["artifacts"].append(scenarios.artifacts(ctx, args.artifact_mib))
                if "web" in args.only:
                    raw["web"].append(scenarios.web(ctx, args.web_flows, args.followers))
                if "fanout" in args.only:
                    raw["fanout"].append(scenarios.fanout(ctx, args.map_items))
                if "skeleton" in args.only:
                    raw["skeleton"].append(
                        skeleton.scenario(
                            cluster,
                            workdir,
                            args.flows,
                            max(args.fan_sizes),
                            args.samples,
                            args.chain,
                        )
                    )
                if "peers" in args.only:
                    peers: dict[str, Any] = {}
                    for peer in PEERS:
                        print(f"  [{time.strftime('%H:%M:%S')}] peer {peer}: {args.jobs:,} jobs")
                        name, dsn = cluster.new_database(peer)
                        try:
                            peers[peer] = run_peer(peer, dsn, args)
                        finally:
                            cluster.drop_database(name)
                        print(
                            f"    steady {peers[peer]['steady_per_s']:.0f} jobs/s, "
                            f"drain {peers[peer]['drain_per_s']:.0f} jobs/s",
                            flush=True,
                        )
                    raw["peers"].append(peers)
        finally:
            cluster.stop()

    combined = {name: combine_repeats(reps) for name, reps in raw.items()}
    doc: dict[str, Any] = {
        "stamp": stamp,
        "command": command,
        "machine": machine_info(),
        "packages": package_versions(),
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "code": code,
        "notes": report.NOTES,
        "results": combined,
    }
    doc["analysis"] = report.analyse(combined)
    doc["targets"] = report.targets(combined)
    doc["raw"] = raw
    doc["elapsed_s"] = round(time.time() - started, 1)
    path = write_results(args.results_dir, stamp, doc)
    chart = report.chart(combined, args.results_dir / f"{stamp}.png", stamp)
    print(report.summary_text(doc))
    print(f"results: {path}")
    if chart is not None:
        print(f"chart:   {chart}")
    if args.readme:
        readme = HERE / "README.md"
        readme.write_text(report.readme(doc, path, chart))
        print(f"readme:  {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

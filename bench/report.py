"""Turning combined figures into the analysis, the target verdicts, the chart and the README."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.artifacts import table as artifacts_table
from bench.stats import Goal, dig, fmt, growth_exponent, linearity_verdict

NOTES = [
    "One machine runs everything: Postgres, nats-server, the scheduler, the runner, the "
    "benchmark client and the peers share its cores, and other work on the machine (other "
    "engineers' test runs) adds noise: read the spread, not just the median.",
    "Throughput is end to end: from the first submit call to the last terminal flow event "
    "(its recorded_at in Postgres); submits overlap processing.",
    "Peers run in their own process with their documented async APIs on the same private "
    "Postgres; their latency is enqueue call -> handler start, weir's is submit call -> "
    "task_started `at` (the runner's clock).",
    "Services log at WARNING (per-attempt INFO lines cost real time); see settings.log_level.",
]

STEP_P50_MS = 3.0
STEP_P99_MS = 10.0
CHAIN_MS_PER_STEP = 3.0
FAN_TASKS_PER_S = 5000.0
REPLICA_GAIN = 1.5
"""'Clearly more' from two schedulers and two runners than from one of each: +50%."""
RSS_GROWTH = 1.10
"""'Flat' RSS over a steady run: the end within 10% of the level after warm-up."""
SUBMIT_TO_START_MS = 10.0
PLANNING_10K_S = 0.5
SCHEDULER_PEAK_MIB = 300.0
SKELETON_PROCESSES = ("scheduler", "runner", "nats", "postgres")


def _scale_rows(scale: Mapping[str, Any]) -> dict[str, list[tuple[int, Mapping[str, Any]]]]:
    shapes: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for key, run in scale.items():
        shape, _, size = key.partition("_")
        if size.isdigit() and isinstance(run, Mapping):
            shapes.setdefault(shape, []).append((int(size), run))
    for rows in shapes.values():
        rows.sort(key=lambda r: r[0])
    return shapes


def _max_scheduler_rss(results: Mapping[str, Any]) -> float | None:
    found: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if "rss_peak_mib" in node:
                value = dig(node, "rss_peak_mib", "scheduler")
                if value is not None:
                    found.append(value)
            for child in node.values():
                walk(child)

    walk(results)
    return max(found) if found else None


def _faster_peer(results: Mapping[str, Any], figure: str) -> tuple[str, float] | None:
    peers = results.get("peers", {})
    best: tuple[str, float] | None = None
    for name, run in peers.items():
        value = dig(run, figure)
        if value is not None and (best is None or value > best[1]):
            best = (name, value)
    return best


def analyse(results: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    growth: dict[str, Any] = {}
    for shape, rows in _scale_rows(results.get("scale", {})).items():
        sizes = [float(size) for size, _ in rows]
        entry: dict[str, Any] = {"sizes": [size for size, _ in rows]}
        for figure in ("total_s", "planning_s", "event_bytes_per_task"):
            costs = [dig(run, figure) for _, run in rows]
            if all(c is not None for c in costs):
                exponent = growth_exponent(sizes, [float(c or 0) for c in costs])
                entry[f"{figure}_exponent"] = exponent
                if figure != "event_bytes_per_task":
                    entry[f"{figure}_verdict"] = linearity_verdict(exponent)
        growth[shape] = entry
    if growth:
        out["scale_growth"] = growth
    weir_tps = dig(results, "throughput", "noop", "single_task_flows", "tasks_per_s")
    batched_tps = dig(results, "throughput", "noop", "single_task_flows_batched", "tasks_per_s")
    weir_lat = dig(results, "latency", "submit_to_start_ms", "p50")
    ratios: dict[str, Any] = {}
    for name, run in results.get("peers", {}).items():
        ratios[name] = {
            "weir_noop_tasks_per_s_over_steady": _ratio(weir_tps, dig(run, "steady_per_s")),
            "weir_noop_batched_tasks_per_s_over_steady": _ratio(
                batched_tps, dig(run, "steady_per_s")
            ),
            "weir_noop_tasks_per_s_over_enqueue_drain": _ratio(
                weir_tps, dig(run, "enqueue_drain_per_s")
            ),
            "weir_submit_to_start_p50_over_enqueue_to_start_p50": _ratio(
                weir_lat, dig(run, "enqueue_to_start_ms", "p50")
            ),
        }
    if ratios:
        out["weir_vs_peers"] = ratios
    floor = dig(results, "skeleton", "single_task_flows_lean_pull", "tasks_per_s")
    steady = _faster_peer(results, "steady_per_s")
    if floor is not None and steady is not None:
        out["lean_floor_vs_peer"] = {steady[0]: _ratio(floor, steady[1])}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _largest(results: Mapping[str, Any], shape: str) -> tuple[int, Mapping[str, Any]] | None:
    """The scale run of `shape` at 10,000 tasks, else at the largest size measured."""
    rows = _scale_rows(results.get("scale", {})).get(shape, [])
    return max(rows, key=lambda r: (r[0] == 10_000, r[0])) if rows else None


def _fastest_peer_latency(results: Mapping[str, Any]) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for name, run in results.get("peers", {}).items():
        value = dig(run, "enqueue_to_start_ms", "p50")
        if value is not None and (best is None or value < best[1]):
            best = (name, value)
    return best


def goals(results: Mapping[str, Any]) -> list[Goal]:
    """Issue 16's goals (and the standing ones), each as weir's figure over a peer's in the
    same run or over a fixed target. A goal is never relaxed: a smaller quick-run size is
    named in the goal, not scaled."""
    peer = _faster_peer(results, "steady_per_s")
    peer_label = f"{peer[0]} steady jobs/s" if peer else "peer steady jobs/s"
    peer_tps = peer[1] if peer else None
    lat_peer = _fastest_peer_latency(results)
    noop = ("throughput", "noop")
    out = [
        Goal(
            "single-task flows/s, one submit per flow",
            dig(results, *noop, "single_task_flows", "tasks_per_s"),
            "flows/s",
            peer_label,
            peer_tps,
            1.0,
        ),
        Goal(
            "single-task flows/s, submitted in batches (submit_many)",
            dig(results, *noop, "single_task_flows_batched", "tasks_per_s"),
            "flows/s",
            peer_label,
            peer_tps,
            1.0,
        ),
    ]
    for key, how in (
        ("single_task_flows", "as weir pulls"),
        ("single_task_flows_lean_pull", "lean pull"),
    ):
        out.append(
            Goal(
                f"the design's floor (bench/skeleton.py, no weir logic, {how}): "
                "single-task flows/s",
                dig(results, "skeleton", key, "tasks_per_s"),
                "flows/s",
                peer_label,
                peer_tps,
                None,
            )
        )
    fan = _largest(results, "fan")
    fan_rate = None
    if fan is not None:
        total, tasks = dig(fan[1], "total_s"), dig(fan[1], "tasks")
        fan_rate = tasks / total if total and tasks else None
    out.append(
        Goal(
            f"one {fan[0] if fan else 10_000:,}-task fan-out drains, tasks/s",
            fan_rate,
            "tasks/s",
            "target",
            FAN_TASKS_PER_S,
            1.0,
        )
    )
    skeleton = results.get("skeleton", {})
    fan_size = (
        dig(skeleton, "fan", "tasks_per_flow")
        or dig(skeleton, "fan_lean_pull", "tasks_per_flow")
        or 10_000
    )
    for key, how in (("fan", "as weir pulls"), ("fan_lean_pull", "lean pull")):
        out.append(
            Goal(
                f"the design's floor ({how}): one {fmt(fan_size, 0)}-task fan-out, tasks/s",
                dig(skeleton, key, "tasks_per_s"),
                "tasks/s",
                "target",
                FAN_TASKS_PER_S,
                None,
            )
        )
    chain = _largest(results, "chain")
    out.append(
        Goal(
            f"one {chain[0] if chain else 10_000:,}-task chain, ms per step",
            dig(chain[1], "per_task_ms") if chain else None,
            "ms",
            "target",
            CHAIN_MS_PER_STEP,
            1.0,
            higher_is_better=False,
        )
    )
    out += [
        Goal(
            "submit -> started p50",
            dig(results, "latency", "submit_to_start_ms", "p50"),
            "ms",
            f"{lat_peer[0]} enqueue -> start p50" if lat_peer else "peer enqueue -> start p50",
            lat_peer[1] if lat_peer else None,
            1.0,
            higher_is_better=False,
        ),
        Goal(
            "the design's floor (bench/skeleton.py, no weir logic, idle): submit -> started p50",
            dig(results, "skeleton", "latency", "submit_to_start_ms", "p50"),
            "ms",
            f"{lat_peer[0]} enqueue -> start p50" if lat_peer else "peer enqueue -> start p50",
            lat_peer[1] if lat_peer else None,
            None,
            higher_is_better=False,
        ),
        Goal(
            "step to step p50",
            dig(results, "latency", "step_to_step_ms", "p50"),
            "ms",
            "target",
            STEP_P50_MS,
            1.0,
            higher_is_better=False,
        ),
        Goal(
            "step to step p99",
            dig(results, "latency", "step_to_step_ms", "p99"),
            "ms",
            "target",
            STEP_P99_MS,
            1.0,
            higher_is_better=False,
        ),
        *(
            Goal(
                f"the design's floor (idle): step to step {p}",
                dig(results, "skeleton", "latency", "step_to_step_ms", p),
                "ms",
                "target",
                target,
                None,
                higher_is_better=False,
            )
            for p, target in (("p50", STEP_P50_MS), ("p99", STEP_P99_MS))
        ),
        Goal(
            f"2 schedulers + 2 runners, flows/s ({fmt(dig(results, 'replicas', 'cpu_count'), 0)}"
            " CPUs)",
            dig(results, "replicas", "x2", "tasks_per_s"),
            "flows/s",
            "1 scheduler + 1 runner",
            dig(results, "replicas", "x1", "tasks_per_s"),
            REPLICA_GAIN,
        ),
    ]
    seconds = fmt(dig(results, "soak", "seconds"), 0)
    for service in ("scheduler", "runner"):
        out.append(
            Goal(
                f"{service} RSS at the end of a {seconds} s steady run",
                dig(results, "soak", "rss", service, "end_mib"),
                "MiB",
                "after warm-up",
                dig(results, "soak", "rss", service, "start_mib"),
                RSS_GROWTH,
                higher_is_better=False,
            )
        )
    log_bytes = dig(results, "soak", "event_bytes_per_task")
    if log_bytes is None and fan is not None:
        log_bytes = dig(fan[1], "event_bytes_per_task")
    out.append(Goal("event log bytes per task", log_bytes, "bytes", "", None, None))
    shapes = _scale_rows(results.get("scale", {}))
    plans = [dig(run, "planning_s") for rows in shapes.values() for n, run in rows if n == 10_000]
    planning = max((p for p in plans if p is not None), default=None)
    out += [
        Goal(
            "submit -> started p50 (standing goal)",
            dig(results, "latency", "submit_to_start_ms", "p50"),
            "ms",
            "target",
            SUBMIT_TO_START_MS,
            1.0,
            higher_is_better=False,
        ),
        Goal(
            "10,000-task flow planning (standing goal)",
            planning,
            "s",
            "target",
            PLANNING_10K_S,
            1.0,
            higher_is_better=False,
        ),
        Goal(
            "scheduler peak RSS, any scenario (standing goal)",
            _max_scheduler_rss(results),
            "MiB",
            "target",
            SCHEDULER_PEAK_MIB,
            1.0,
            higher_is_better=False,
        ),
    ]
    return out


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [goal.as_dict() for goal in goals(results)]


def _goal_row(t: Mapping[str, Any]) -> str:
    unit = t["unit"]
    against = t["against"]
    if against == "target":
        against = f"target {fmt(t['reference'], 2)} {unit}"
    elif t["reference"] is not None:
        against = f"{against}: {fmt(t['reference'], 2)}"
    goal = "—" if t["goal"] is None else f"{t['comparison']} {fmt(t['goal'], 2)}"
    return (
        f"| {t['name']} | {fmt(t['weir'], 2)} {unit} | {against or '—'} "
        f"| {fmt(t['ratio'], 3)} | {goal} | **{t['verdict']}** |"
    )


def chart(results: Mapping[str, Any], path: Path, stamp: str) -> Path | None:
    """Throughput next to the peers', latency p50s, and every goal as a ratio with its
    verdict; None without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars: list[tuple[str, float, str]] = []
    for executor in ("noop", "local"):
        for kind, label in (
            ("single_task_flows", "flows"),
            ("single_task_flows_batched", "flows, batched"),
            ("one_wide_flow", "wide flow"),
        ):
            value = dig(results, "throughput", executor, kind, "tasks_per_s")
            if value is not None:
                bars.append((f"weir {executor}\n{label}", value, "tab:blue"))
    for replicas in ("x1", "x2"):
        value = dig(results, "replicas", replicas, "tasks_per_s")
        if value is not None:
            n = replicas[1:]
            bars.append((f"weir {n}+{n}\nbatched", value, "tab:cyan"))
    for key, label in (
        ("single_task_flows", "floor, flows\nas weir pulls"),
        ("single_task_flows_lean_pull", "floor, flows\nlean pull"),
    ):
        value = dig(results, "skeleton", key, "tasks_per_s")
        if value is not None:
            bars.append((label, value, "tab:gray"))
    for name, run in results.get("peers", {}).items():
        for figure, label in (("steady_per_s", "steady"), ("enqueue_drain_per_s", "enq+drain")):
            value = dig(run, figure)
            if value is not None:
                bars.append((f"{name}\n{label}", value, "tab:orange"))
    lat: list[tuple[str, float, str]] = []
    for figure, label in (
        ("submit_to_start_ms", "weir\nsubmit→start"),
        ("step_to_step_ms", "weir\nstep→step"),
    ):
        value = dig(results, "latency", figure, "p50")
        if value is not None:
            lat.append((label, value, "tab:blue"))
    for figure, label in (
        ("submit_to_start_ms", "floor\nsubmit→start"),
        ("step_to_step_ms", "floor\nstep→step"),
    ):
        value = dig(results, "skeleton", "latency", figure, "p50")
        if value is not None:
            lat.append((label, value, "tab:gray"))
    for name, run in results.get("peers", {}).items():
        value = dig(run, "enqueue_to_start_ms", "p50")
        if value is not None:
            lat.append((f"{name}\nenqueue→start", value, "tab:orange"))
    scored = [g for g in goals(results) if g.ratio is not None and g.goal is not None]
    if not bars and not lat and not scored:
        return None
    fig = plt.figure(figsize=(14, 10))
    grid = fig.add_gridspec(2, 2, width_ratios=[2, 1], height_ratios=[1, 1.1])
    for ax, data, title, unit in (
        (
            fig.add_subplot(grid[0, 0]),
            bars,
            "Throughput (no-op work; gray: the design's floor, bench/skeleton.py)",
            "tasks or jobs / s",
        ),
        (
            fig.add_subplot(grid[0, 1]),
            lat,
            "Latency p50 on an idle system (gray: the design's floor)",
            "ms",
        ),
    ):
        if data:
            labels = [d[0] for d in data]
            values = [d[1] for d in data]
            ax.bar(labels, values, color=[d[2] for d in data])
            for i, v in enumerate(values):
                ax.text(i, v, fmt(v), ha="center", va="bottom", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
    ax = fig.add_subplot(grid[1, :])
    if scored:
        names = [g.name for g in scored]
        ratios = [g.ratio or 0.0 for g in scored]
        colours = ["tab:green" if g.verdict == "hit" else "tab:red" for g in scored]
        ys = list(range(len(scored)))
        ax.barh(ys, ratios, color=colours)
        ax.scatter([g.goal or 0.0 for g in scored], ys, marker="|", s=400, color="black", zorder=3)
        for y, g in zip(ys, scored, strict=True):
            sign = "≥" if g.higher_is_better else "≤"
            ax.text(
                g.ratio or 0.0,
                y,
                f" {fmt(g.ratio, 3)} (goal {sign} {fmt(g.goal, 2)}): {g.verdict}",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(ys, [f"{n}\n÷ {g.against}" for n, g in zip(names, scored, strict=True)])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xscale("log")
        ax.invert_yaxis()
    ax.set_title("Goals as ratios (weir ÷ peer or target; black tick = goal)", fontsize=10)
    fig.suptitle(f"weir vs PgQueuer and procrastinate, same machine and Postgres ({stamp})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _m(results: Mapping[str, Any], *path: str, digits: int = 1) -> str:
    return fmt(dig(results, *path), digits)


def _spread(results: Mapping[str, Any], *path: str) -> str:
    node: Any = results
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return ""
        node = node[key]
    if isinstance(node, Mapping) and "spread_pct" in node and len(node.get("values", [])) > 1:
        return f" (±{node['spread_pct'] / 2:.0f}%)"
    return ""


def _fig(results: Mapping[str, Any], *path: str, digits: int = 1) -> str:
    return _m(results, *path, digits=digits) + _spread(results, *path)


def tables(doc: Mapping[str, Any]) -> str:
    r: Mapping[str, Any] = doc["results"]
    lines: list[str] = []
    if "throughput" in r:
        lines += [
            "| throughput (end to end) | tasks/s | elapsed s | submits/s |",
            "|---|---|---|---|",
        ]
        for executor, runs in r["throughput"].items():
            for kind, label in (
                ("single_task_flows", "single-task flows, one submit each"),
                ("single_task_flows_batched", "single-task flows, submit_many"),
                ("one_wide_flow", "one wide flow"),
            ):
                if kind not in runs:
                    continue
                n = _m(runs, kind, "tasks", digits=0)
                lines.append(
                    f"| {executor}: {n} {label} | {_fig(runs, kind, 'tasks_per_s', digits=0)} "
                    f"| {_fig(runs, kind, 'elapsed_s')} "
                    f"| {_m(runs, kind, 'submits_per_s', digits=0)} |"
                )
        lines.append("")
    if "latency" in r:
        lines += ["| latency, idle system (ms) | p50 | p95 | p99 |", "|---|---|---|---|"]
        for key, label in (
            ("submit_to_start_ms", "submit -> first task started"),
            (
                "step_to_step_ms",
                f"step to step, {_m(r['latency'], 'chain_tasks', digits=0)}-task chain",
            ),
            ("submit_ack_ms", "submit acknowledged by JetStream"),
        ):
            lines.append(
                f"| {label} | {_fig(r['latency'], key, 'p50', digits=2)} "
                f"| {_m(r['latency'], key, 'p95', digits=2)} "
                f"| {_m(r['latency'], key, 'p99', digits=2)} |"
            )
        lines.append("")
    if "scale" in r:
        lines += [
            "| scale (noop) | planning s | total s | ms/task | scheduler MiB | runner MiB "
            "| events/task | event bytes/task |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for shape, rows in _scale_rows(r["scale"]).items():
            for size, run in rows:
                lines.append(
                    f"| {shape} {size:,} | {_m(run, 'planning_s', digits=3)} "
                    f"| {_fig(run, 'total_s')} | {_m(run, 'per_task_ms', digits=2)} "
                    f"| {_m(run, 'rss_peak_mib', 'scheduler')} "
                    f"| {_m(run, 'rss_peak_mib', 'runner')} "
                    f"| {_m(run, 'event_rows_per_task', digits=2)} "
                    f"| {_m(run, 'event_bytes_per_task', digits=0)} |"
                )
        growth = doc.get("analysis", {}).get("scale_growth", {})
        for shape, entry in growth.items():
            exp = entry.get("total_s_exponent")
            lines.append(
                f"\nGrowth of total time with size, {shape}: exponent "
                f"{fmt(exp, 2)} ({entry.get('total_s_verdict', 'unknown')}); planning exponent "
                f"{fmt(entry.get('planning_s_exponent'), 2)}."
            )
        lines.append("")
    if "peers" in r:
        lines += [
            "| peer, same Postgres | jobs | enqueue/s | drain/s | enqueue+drain/s | steady/s "
            "| enqueue->start p50 ms | weir noop ÷ steady |",
            "|---|---|---|---|---|---|---|---|",
        ]
        ratios = doc.get("analysis", {}).get("weir_vs_peers", {})
        for name, run in r["peers"].items():
            ratio = ratios.get(name, {}).get("weir_noop_tasks_per_s_over_steady")
            lines.append(
                f"| {name} | {_m(run, 'jobs', digits=0)} | {_m(run, 'enqueue_per_s', digits=0)} "
                f"| {_m(run, 'drain_per_s', digits=0)} "
                f"| {_m(run, 'enqueue_drain_per_s', digits=0)} "
                f"| {_fig(run, 'steady_per_s', digits=0)} "
                f"| {_m(run, 'enqueue_to_start_ms', 'p50', digits=2)} | {fmt(ratio, 3)} |"
            )
        lines.append("")
    if "replicas" in r:
        lines += [
            "| replicas (noop, submit_many) | flows | tasks/s | elapsed s | scheduler MiB "
            "| runner MiB |",
            "|---|---|---|---|---|---|",
        ]
        for key, label in (("x1", "1 scheduler + 1 runner"), ("x2", "2 schedulers + 2 runners")):
            run = r["replicas"].get(key, {})
            lines.append(
                f"| {label} | {_m(run, 'flows', digits=0)} | {_fig(run, 'tasks_per_s', digits=0)} "
                f"| {_fig(run, 'elapsed_s')} | {_m(run, 'rss_peak_mib', 'scheduler')} "
                f"| {_m(run, 'rss_peak_mib', 'runner')} |"
            )
        lines.append(f"\n{_m(r['replicas'], 'cpu_count', digits=0)} CPUs on this machine.\n")
    if "soak" in r:
        soak = r["soak"]
        lines += [
            f"| steady run: {_m(soak, 'rate_per_s', digits=0)} flows/s for "
            f"{_m(soak, 'seconds', digits=0)} s | RSS after warm-up MiB | at the end MiB "
            "| slope MiB/min | peak MiB |",
            "|---|---|---|---|---|",
        ]
        for service in ("scheduler", "runner"):
            lines.append(
                f"| {service} | {_m(soak, 'rss', service, 'start_mib')} "
                f"| {_m(soak, 'rss', service, 'end_mib')} "
                f"| {_m(soak, 'rss', service, 'slope_mib_per_min', digits=2)} "
                f"| {_m(soak, 'rss', service, 'peak_mib')} |"
            )
        lines.append(
            f"\n{_m(soak, 'flows', digits=0)} flows, all ended: "
            f"{'yes' if soak.get('completed_in_time') else 'no'}, "
            f"{_m(soak, 'drain_after_last_submit_s', digits=2)} s after the last submit; "
            f"event log {_m(soak, 'event_bytes_per_task', digits=0)} bytes and "
            f"{_m(soak, 'event_rows_per_task', digits=2)} events per task.\n"
        )
    if "artifacts" in r:
        lines += [artifacts_table(r["artifacts"])]
    if "web" in r:
        w = r["web"]
        followers = _m(w, "sse", "followers", digits=0)
        lines += [
            "| weir-web | measured |",
            "|---|---|",
            f"| 10,000-task flow page usable (Chromium) | {_fig(w, 'page_10000_tasks_s')} s |",
            f"| {followers} SSE followers: weir-web RSS | {_m(w, 'sse', 'web_rss_mib')} MiB |",
            f"| {followers} SSE followers: weir-web CPU while they wait "
            f"| {_m(w, 'sse', 'web_cpu_idle_percent')} % |",
            f"| cancel -> terminal event at all {followers} followers "
            f"| {_m(w, 'sse', 'cancel_to_all_followers_ms', digits=0)} ms |",
            f"| `GET /flows` (50 of {_m(w, 'list_flows', digits=0)} flows) p50 "
            f"| {_fig(w, 'list', 'p50_ms')} ms |",
            f"| `GET /flows?where=status=succeeded and name=single` p50 "
            f"| {_m(w, 'list_where', 'p50_ms')} ms |",
            "",
        ]
    if "fanout" in r:
        f = r["fanout"]
        lines += [
            "| map (`map: {over}`, local executor) | measured |",
            "|---|---|",
            f"| items | {_m(f, 'items', digits=0)} |",
            f"| submit -> flow ended | {_fig(f, 'total_s')} s "
            f"({_m(f, 'per_item_ms')} ms per item) |",
            f"| list's task ended -> `task_expanded` recorded | {_m(f, 'expand_s', digits=2)} s |",
            f"| event log per item | {_m(f, 'event_bytes_per_item', digits=0)} bytes |",
            f"| scheduler peak RSS | {_m(f, 'rss_peak_mib', 'scheduler')} MiB |",
            "",
        ]
    if "skeleton" in r:
        lines += [
            "| the design's floor: weir's messages and appends, no weir logic "
            "(`bench/skeleton.py`) | tasks/s | CPU ms per task: scheduler, runner, nats, "
            "postgres | in all |",
            "|---|---|---|---|",
        ]
        for key, count, label in (
            ("single_task_flows", "flows", "single-task flows, taken as weir pulls"),
            ("single_task_flows_lean_pull", "flows", "single-task flows, lean pull"),
            ("fan", "tasks_per_flow", "tasks of one flow, taken as weir pulls"),
            ("fan_lean_pull", "tasks_per_flow", "tasks of one flow, lean pull"),
        ):
            run = r["skeleton"].get(key, {})
            if not run:
                continue
            cpu = [dig(run, "cpu_ms_per_task", name) for name in SKELETON_PROCESSES]
            total = (
                sum(c for c in cpu if c is not None) if all(c is not None for c in cpu) else None
            )
            lines.append(
                f"| {_m(run, count, digits=0)} {label} | {_fig(run, 'tasks_per_s', digits=0)} "
                f"| {', '.join(fmt(c, 3) for c in cpu)} | {fmt(total, 3)} |"
            )
        lines.append("")
        idle = r["skeleton"].get("latency", {})
        if idle:
            lines += [
                "| the design's floor, idle (`bench/skeleton.py`, the latency scenario's "
                "samples) | p50 ms | p99 ms |",
                "|---|---|---|",
                f"| {_m(idle, 'submit_to_start_ms', 'n', digits=0)} single-task flows one at a "
                "time: submit -> the runner took the dispatch "
                f"| {_m(idle, 'submit_to_start_ms', 'p50', digits=2)} "
                f"| {_m(idle, 'submit_to_start_ms', 'p99', digits=2)} |",
                f"| a {_m(idle, 'chain_tasks', digits=0)}-task chain: a task's report sent -> "
                f"the runner took the next | {_m(idle, 'step_to_step_ms', 'p50', digits=2)} "
                f"| {_m(idle, 'step_to_step_ms', 'p99', digits=2)} |",
                "",
            ]
    lines += [
        "| goal | weir | against | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_goal_row(t) for t in doc.get("targets", [])]
    return "\n".join(lines) + "\n"


def summary_text(doc: Mapping[str, Any]) -> str:
    return "\n" + tables(doc)


def readme(doc: Mapping[str, Any], results_path: Path, chart_path: Path | None) -> str:
    machine = doc["machine"]
    rel = f"results/{results_path.name}"
    chart_line = f"\n![weir vs peers](results/{chart_path.name})\n" if chart_path else ""
    notes = "\n".join(f"- {n}" for n in doc["notes"])
    return f"""# weir benchmarks

Rerun everything with `./just bench` (installs the `bench` extra, then `python -m bench`).
Not part of `./just test`; `tests/bench/` checks the harness's own helpers, and that the
skeleton (below) moves weir's messages and appends, on a real Postgres and nats-server.

```sh
./just bench                      # full run: 3 repeats, 20,000 flows, 1k/5k/10k DAGs, peers
./just bench --quick              # smoke run in a couple of minutes (small sizes, 1 repeat)
./just bench --only latency       # one scenario (repeatable): throughput, latency, scale,
                                  # replicas, soak, peers, artifacts, web, fanout, skeleton
./just bench --only fanout --map-items 10000  # a task mapped over N items (default 10,000)
./just bench --only web --web-flows 2000  # fewer flows for GET /flows (default 20,000)
./just bench --only artifacts --artifact-mib 500  # artifact size (default 200 MiB)
./just bench --repeats 5 --profile  # scheduler + runner under pyinstrument: results/profile-*/
./just bench --code HEAD          # measure a git revision (exported with git archive), not the tree
./just bench --executors noop     # skip the local executor (over half of a full run's time)
./just bench --only soak --soak-seconds 1800  # a longer steady run (default 600 s, quick 45 s)
./just bench --render results/T.json --readme  # redo goals, chart, README from a results file
```

Each scenario starts its own database on one private Postgres and a fresh nats-server, and
runs the scheduler and the runner as separate processes (`weir.devstack.Stack`) so psutil can
sample each one's RSS. `WEIR_EXECUTOR=noop` reports success without running anything;
`WEIR_EXECUTOR=local` runs `true` as a process. Every figure in
`results/<timestamp>.json` is the median of the repeats with min, max and spread.
`artifacts` uploads then downloads one random (incompressible) file through the pods' helper
(`python -m weir_runner.artifacts`) against a fresh nats-server, and reports MiB/s over each
helper run (start-up included) and the helper's peak RSS from `wait4`, next to a 4 KiB
artifact's baseline.
`web` starts weir-web (a process too) and measures: the page of a finished 10,000-task fan
flow in Chromium (`/usr/bin/chromium` through Playwright; skipped without it), from
navigation until its graph is drawn and it answers input; weir-web's RSS and CPU while
`--followers` (200) SSE clients follow one waiting flow, and the time until all of them see
its cancellation; `GET /api/v1/flows` (a page of 50) p50/p95 with `--web-flows` flows in the
log (20,000; 1,000 with `--quick`), plain and with a `where` filter.
`fanout` submits a flow whose task writes a JSON list of `--map-items` numbers, a task mapped
over it (`true {{{{ item }}}}` per item, local executor) and one after it, and measures submit to
the flow's end, the expansion (list written to `task_expanded` recorded), event-log bytes per
item and peak RSS.
`skeleton` measures the design's floor (`bench/skeleton.py`, also `python -m
bench.skeleton`): three processes move a single-task flow's messages and appends exactly as
weir does (a submit, a dispatch, a report, five events: eight acknowledged JetStream
publishes, three of them taken from pull consumers and acknowledged, and two appends to
Postgres), on weir's streams with its `Publisher` and `Puller`, and decide nothing:
no validation, planning, deciding, projections, outbox, tokens, telemetry or executor. Its
rate bounds what an implementation of this wire as weir is built (Python asyncio services
on nats-py and asyncpg) can reach on the machine, and its CPU per task beside weir's is what
weir's own work costs. It runs `--flows` single-task flows, then one flow of the largest fan
size, each twice: taking messages as weir does (`weir.jetstream.Puller`: a request for one
message, then one for what is pending, so that no request outlives its take) and with a lean
pull (one request per batch kept open across takes), a change weir has not made. Then it
repeats the latency scenario on an idle skeleton (`python -m bench.skeleton --latency
100`): the same samples, one single-task flow at a time 50 ms apart (submit until the runner
took the dispatch), then one chain of the same length whose scheduler dispatches each task
when the one before it reports (its report sent until the runner took the next). Nothing is
sent while it measures: the runner keeps its times and hands them over at the end. `python
-m bench.skeleton --grouped` prices another: each append's events published as one message
(a wire change).

Single-task flows are submitted two ways: one message per flow (`Client.submit`, 256 in
flight) and in batches of 1,000 (`Client.submit_many`: one write, acks awaited together).
`replicas` runs the batched flows through one scheduler and one runner, then two of each.
`soak` submits a steady rate of single-task flows and samples both services' RSS every
0.1 s: the level after warm-up (the median of the second fifth) against the end (the last
fifth), and the event log's bytes per task at the end (`pg_total_relation_size('events')`).

The goal table puts every goal as a ratio, weir ÷ the peer measured in the same run (the
faster one) or weir ÷ a fixed target, with its verdict; a goal stated for 10,000 tasks is
measured at the largest size the run used, and named so. Goals are never scaled down.

## Latest results

`{doc["command"]}` — code: {doc.get("code", "?")}; {doc["stamp"]}, {machine.get("cpu_count")} CPUs
({machine.get("cpu_model", machine.get("processor", "?"))}), Python {machine.get("python")},
{doc.get("elapsed_s", "?")} s in all. Full figures: [`{rel}`]({rel}).
{chart_line}
{tables(doc)}
## Notes

{notes}
"""

"""Turning combined figures into the analysis, the target verdicts, the chart and the README."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.artifacts import table as artifacts_table
from bench.stats import Target, dig, fmt, growth_exponent, linearity_verdict

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

TARGETS = (
    ("noop throughput >= faster peer's steady jobs/s", "tasks/s"),
    ("step-to-step p50 <= 5 ms", "ms"),
    ("submit->start p50 <= 10 ms", "ms"),
    ("10,000-task flow planning < 0.5 s", "s"),
    ("scheduler peak RSS < 300 MiB", "MiB"),
)


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
    weir_lat = dig(results, "latency", "submit_to_start_ms", "p50")
    ratios: dict[str, Any] = {}
    for name, run in results.get("peers", {}).items():
        ratios[name] = {
            "weir_noop_tasks_per_s_over_steady": _ratio(weir_tps, dig(run, "steady_per_s")),
            "weir_noop_tasks_per_s_over_enqueue_drain": _ratio(
                weir_tps, dig(run, "enqueue_drain_per_s")
            ),
            "weir_submit_to_start_p50_over_enqueue_to_start_p50": _ratio(
                weir_lat, dig(run, "enqueue_to_start_ms", "p50")
            ),
        }
    if ratios:
        out["weir_vs_peers"] = ratios
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    weir_tps = dig(results, "throughput", "noop", "single_task_flows", "tasks_per_s")
    peer = _faster_peer(results, "steady_per_s")
    plans = [
        dig(results, "scale", key, "planning_s")
        for key in results.get("scale", {})
        if key.endswith("_10000")
    ]
    planning = max((p for p in plans if p is not None), default=None)
    items = [
        Target(TARGETS[0][0], weir_tps, peer[1] if peer else float("nan"), True, "tasks/s"),
        Target(TARGETS[1][0], dig(results, "latency", "step_to_step_ms", "p50"), 5.0, False, "ms"),
        Target(
            TARGETS[2][0], dig(results, "latency", "submit_to_start_ms", "p50"), 10.0, False, "ms"
        ),
        Target(TARGETS[3][0], planning, 0.5, False, "s"),
        Target(TARGETS[4][0], _max_scheduler_rss(results), 300.0, False, "MiB"),
    ]
    out = [t.as_dict() for t in items]
    if peer is None:
        out[0]["verdict"] = "not measured"
    else:
        out[0]["peer"] = peer[0]
    return out


def chart(results: Mapping[str, Any], path: Path, stamp: str) -> Path | None:
    """Bars: weir's throughput next to the peers', and latency p50s; None without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars: list[tuple[str, float, str]] = []
    for executor in ("noop", "local"):
        for kind, label in (("single_task_flows", "flows"), ("one_wide_flow", "wide flow")):
            value = dig(results, "throughput", executor, kind, "tasks_per_s")
            if value is not None:
                bars.append((f"weir {executor}\n{label}", value, "tab:blue"))
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
    for name, run in results.get("peers", {}).items():
        value = dig(run, "enqueue_to_start_ms", "p50")
        if value is not None:
            lat.append((f"{name}\nenqueue→start", value, "tab:orange"))
    if not bars and not lat:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
    for ax, data, title, unit in (
        (axes[0], bars, "Throughput (no-op work), median of repeats", "tasks or jobs / s"),
        (axes[1], lat, "Latency p50 on an idle system", "ms"),
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
    fig.suptitle(f"weir vs PgQueuer and procrastinate, same machine and Postgres ({stamp})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
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
                ("single_task_flows", "single-task flows"),
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
    lines += ["| target | measured | goal | verdict |", "|---|---|---|---|"]
    for t in doc.get("targets", []):
        lines.append(
            f"| {t['name']} | {fmt(t['measured'], 2)} {t['unit']} | {t['comparison']} "
            f"{fmt(t['goal'], 2)} | **{t['verdict']}** |"
        )
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
Not part of `./just test`; `tests/bench/` only checks the harness's own helpers.

```sh
./just bench                      # full run: 3 repeats, 20,000 flows, 1k/5k/10k DAGs, peers
./just bench --quick              # smoke run in a couple of minutes (small sizes, 1 repeat)
./just bench --only latency       # one of: throughput | latency | scale | peers | artifacts | web
./just bench --only web --web-flows 2000  # fewer flows for GET /flows (default 20,000)
./just bench --only artifacts --artifact-mib 500  # artifact size (default 200 MiB)
./just bench --repeats 5 --profile  # scheduler under pyinstrument, reports in results/profile-*/
./just bench --code HEAD          # measure a git revision (exported with git archive), not the tree
./just bench --executors noop     # skip the local executor (over half of a full run's time)
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

## Latest results

`{doc["command"]}` — code: {doc.get("code", "?")}; {doc["stamp"]}, {machine.get("cpu_count")} CPUs
({machine.get("cpu_model", machine.get("processor", "?"))}), Python {machine.get("python")},
{doc.get("elapsed_s", "?")} s in all. Full figures: [`{rel}`]({rel}).
{chart_line}
{tables(doc)}
## Notes

{notes}
"""

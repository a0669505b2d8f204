"""weir's metrics: one table of instruments (`METRICS`) and one method per fact a service
knows (`Metrics`, and the process's `metrics` on the global meter provider)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
)

from weir.telemetry.providers import INSTRUMENTATION_NAME

log = logging.getLogger("weir.telemetry")

InstrumentKind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True)
class MetricName:
    """One instrument: its OpenTelemetry name, unit and kind, and the series Prometheus shows."""

    name: str
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """A histogram's bucket boundaries."""

    @property
    def prometheus(self) -> str:
        """The metric name after the collector's Prometheus exporter: dots become
        underscores, the unit becomes a suffix, counters end in `_total`."""
        base = self.name.replace(".", "_")
        suffix = {"s": "_seconds", "By": "_bytes"}.get(self.unit, "")
        if suffix and not base.endswith(suffix):
            base += suffix
        return base + "_total" if self.kind == "counter" else base

    @property
    def prometheus_series(self) -> tuple[str, ...]:
        if self.kind == "histogram":
            return tuple(self.prometheus + s for s in ("_bucket", "_sum", "_count"))
        return (self.prometheus,)


LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS_S = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600)

LABEL_QUEUE = "queue"
LABEL_STATUS = "status"
LABEL_ERROR_TYPE = "error_type"
LABEL_KIND = "kind"


def _counter(name: str, unit: str, description: str, *labels: str) -> MetricName:
    return MetricName(name, "counter", unit, description, labels)


def _seconds(name: str, description: str, buckets: tuple[float, ...], *labels: str) -> MetricName:
    return MetricName(name, "histogram", "s", description, labels, buckets)


FLOWS_STARTED = _counter("weir.flows.started", "{flow}", "Flows accepted")
FLOWS_FINISHED = _counter(
    "weir.flows.finished",
    "{flow}",
    "Flows that ended, by status (succeeded, failed, rejected)",
    LABEL_STATUS,
)
TASKS_STARTED = _counter(
    "weir.tasks.started", "{attempt}", "Task attempts a runner started", LABEL_QUEUE
)
TASKS_FINISHED = _counter(
    "weir.tasks.finished",
    "{attempt}",
    "Task attempts that ended, by status (succeeded, failed) and error type",
    LABEL_QUEUE,
    LABEL_STATUS,
    LABEL_ERROR_TYPE,
)
TASK_RETRIES = _counter("weir.task.retries", "{attempt}", "Attempts after the first", LABEL_QUEUE)
TASK_LOST = _counter(
    "weir.task.lost",
    "{attempt}",
    "Attempts whose runner vanished (failed with error type lost)",
    LABEL_QUEUE,
)
DISPATCH_LATENCY = _seconds(
    "weir.task.dispatch_latency",
    "From a task being ready (dispatched) until a runner started it",
    LATENCY_BUCKETS_S,
    LABEL_QUEUE,
)
TASK_DURATION = _seconds(
    "weir.task.duration",
    "From start to end of a task attempt",
    DURATION_BUCKETS_S,
    LABEL_QUEUE,
    LABEL_STATUS,
)
RELAY_LAG = _seconds(
    "weir.relay.lag",
    "From an outbox row's commit until the relay published it",
    LATENCY_BUCKETS_S,
    LABEL_KIND,
)
QUEUE_DEPTH = MetricName(
    "weir.queue.depth",
    "gauge",
    "{attempt}",
    "Dispatches waiting for a runner, per queue",
    (LABEL_QUEUE,),
)

METRICS: tuple[MetricName, ...] = (
    FLOWS_STARTED,
    FLOWS_FINISHED,
    TASKS_STARTED,
    TASKS_FINISHED,
    TASK_RETRIES,
    TASK_LOST,
    DISPATCH_LATENCY,
    TASK_DURATION,
    RELAY_LAG,
    QUEUE_DEPTH,
)
"""Every instrument weir records: code and dashboards both use this table."""


QueueDepths = Callable[[], Mapping[str, int]]
"""Returns the current depth of each queue. Called on the metrics exporter's thread at each
export: it must not block or touch the event loop; return numbers the service cached."""


class Metrics:
    """The instruments, with one method per fact a service knows.

    Built on the global meter provider by default, so the module-level `metrics` works
    whether it is used before or after `setup` (and is a no-op without it).
    """

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter: Meter = otel_metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=provider)
        self._flows_started = _new_counter(meter, FLOWS_STARTED)
        self._flows_finished = _new_counter(meter, FLOWS_FINISHED)
        self._tasks_started = _new_counter(meter, TASKS_STARTED)
        self._tasks_finished = _new_counter(meter, TASKS_FINISHED)
        self._retries = _new_counter(meter, TASK_RETRIES)
        self._lost = _new_counter(meter, TASK_LOST)
        self._dispatch_latency = _new_histogram(meter, DISPATCH_LATENCY)
        self._task_duration = _new_histogram(meter, TASK_DURATION)
        self._relay_lag = _new_histogram(meter, RELAY_LAG)
        self._queue_depths: list[QueueDepths] = []
        g = QUEUE_DEPTH
        meter.create_observable_gauge(g.name, [self._observe_queue_depth], g.unit, g.description)

    def flow_started(self) -> None:
        """A submit became a flow (not counted again on a duplicate submit)."""
        self._flows_started.add(1)

    def flow_finished(self, status: str) -> None:
        """`succeeded`, `failed` or `rejected`."""
        self._flows_finished.add(1, {LABEL_STATUS: status})

    def task_retried(self, queue: str) -> None:
        """An attempt after the first was dispatched."""
        self._retries.add(1, {LABEL_QUEUE: queue})

    def task_started(self, queue: str, dispatch_latency_s: float | None = None) -> None:
        """A runner started an attempt; `dispatch_latency_s` is `task_started.at` minus
        `task_dispatched.at` (the moment the task was ready)."""
        self._tasks_started.add(1, {LABEL_QUEUE: queue})
        if dispatch_latency_s is not None:
            self._dispatch_latency.record(max(dispatch_latency_s, 0.0), {LABEL_QUEUE: queue})

    def task_finished(
        self,
        queue: str,
        status: str,
        duration_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """An attempt ended: `status` is `succeeded` or `failed`; `duration_s` runs from
        `task_started.at` (None if it never started). Error type `lost` also counts as lost."""
        self._tasks_finished.add(
            1, {LABEL_QUEUE: queue, LABEL_STATUS: status, LABEL_ERROR_TYPE: error_type or ""}
        )
        if duration_s is not None:
            self._task_duration.record(
                max(duration_s, 0.0), {LABEL_QUEUE: queue, LABEL_STATUS: status}
            )
        if error_type == "lost":
            self._lost.add(1, {LABEL_QUEUE: queue})

    def relay_published(self, kind: str, lag_s: float) -> None:
        """The relay published an outbox row (`kind`: `event` or `dispatch`) `lag_s` seconds
        after it was committed."""
        self._relay_lag.record(max(lag_s, 0.0), {LABEL_KIND: kind})

    def observe_queue_depth(self, depths: QueueDepths) -> None:
        """Report queue depths with `depths` (see `QueueDepths`) at every export."""
        self._queue_depths.append(depths)

    def _observe_queue_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for depths in self._queue_depths:
            try:
                current = dict(depths())
            except Exception:  # a failing callback must not break the whole export
                log.exception("queue depth callback failed")
                continue
            observations.extend(Observation(n, {LABEL_QUEUE: q}) for q, n in current.items())
        return observations


def _new_counter(meter: Meter, metric: MetricName) -> Counter:
    return meter.create_counter(metric.name, metric.unit, metric.description)


def _new_histogram(meter: Meter, metric: MetricName) -> Histogram:
    return meter.create_histogram(
        metric.name,
        metric.unit,
        metric.description,
        explicit_bucket_boundaries_advisory=metric.buckets,
    )


metrics = Metrics()
"""The process's instruments on the global meter provider."""


def metric_names() -> frozenset[str]:
    """Every series name Prometheus can hold for weir (dashboards may use only these)."""
    return frozenset(s for m in METRICS for s in m.prometheus_series)

"""Telemetry: deterministic flow traces, spans from events, NATS propagation, metrics, and the
terminal waterfall. In-memory exporters and readers only: no collector, no servers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from weir import telemetry, waterfall
from weir_proto import events as ev
from weir_proto import subjects
from weir_proto.events import FlowEvent
from weir_proto.spec import FlowSpec, TaskSpec

from tests.flows import task

FLOW = "hello-1"
T0 = datetime(2026, 11, 25, 18, 5, 1, 120_000, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TASKS = ("fetch", "upper", "join")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


class Log:
    """Builds a flow's events with consecutive `seq`."""

    def __init__(self, flow_id: str = FLOW) -> None:
        self.flow_id = flow_id
        self.events: list[FlowEvent] = []

    def add(self, kind: type[Any], seconds: float, **fields: Any) -> Log:
        seq = len(self.events) + 1
        common = {"id": f"{self.flow_id}.{seq}", "flow_id": self.flow_id, "seq": seq}
        self.events.append(kind(**common, at=at(seconds), **fields))
        return self


def submitted(log: Log, name: str = "diamond", tasks: tuple[str, ...] = ("fetch",)) -> Log:
    spec = FlowSpec(name=name, tasks=[TaskSpec(name=t, cmd=["true"]) for t in tasks])
    return log.add(ev.FlowSubmitted, 0.0, spec=spec)


def retried_then_failed(flow_id: str = FLOW) -> Log:
    """fetch succeeds; upper is lost once (and retried), then exits 2; join is skipped; the
    flow fails."""
    fetch, upper, join = TASKS
    tasks = [
        TaskSpec(name=fetch, cmd=["true"]),
        TaskSpec(name=upper, cmd=["true"], depends=[fetch], queue="gpu"),
        TaskSpec(name=join, cmd=["true"], depends=[upper]),
    ]
    log = Log(flow_id).add(ev.FlowSubmitted, 0.0, spec=FlowSpec(name="diamond", tasks=tasks))
    log.add(ev.TaskDispatched, 0.010, task="fetch", attempt=1, queue="default")
    log.add(ev.TaskStarted, 0.030, task="fetch", attempt=1, runner="runner-a")
    log.add(ev.TaskSucceeded, 1.130, task="fetch", attempt=1)
    log.add(ev.TaskDispatched, 1.140, task="upper", attempt=1, queue="gpu")
    log.add(ev.TaskStarted, 1.200, task="upper", attempt=1, runner="runner-a")
    log.add(
        ev.TaskAttemptFailed,
        2.0,
        task="upper",
        attempt=1,
        error_type="lost",
        message="its runner stopped sending heartbeats",
        retry_at=at(2.5),
    )
    log.add(ev.TaskDispatched, 2.5, task="upper", attempt=2, queue="gpu")
    log.add(ev.TaskStarted, 2.9, task="upper", attempt=2, runner="runner-b")
    failure = {"error_type": "exit_code", "message": "exited with 2", "exit_code": 2}
    log.add(ev.TaskFailed, 3.6, task="upper", attempt=2, **failure)
    log.add(ev.TaskSkipped, 3.6, task="join", reason='upstream task "upper" failed')
    log.add(ev.FlowFailed, 3.61, failed_tasks=["upper"])
    return log


def failing_flow() -> list[FlowEvent]:
    return retried_then_failed().events


class Process:
    """One process's tracer provider with an in-memory exporter."""

    def __init__(self, name: str = "weir-test") -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = telemetry.new_tracer_provider(
            name, SimpleSpanProcessor(self.exporter), env={}
        )

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def span(self, name: str) -> ReadableSpan:
        matches = [s for s in self.spans if s.name == name]
        assert len(matches) == 1, [s.name for s in self.spans]
        return matches[0]


@pytest.fixture
def process() -> Iterator[Process]:
    p = Process()
    yield p
    p.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# Deterministic ids --------------------------------------------------------------------------


def test_trace_id_is_the_first_16_bytes_of_sha256_of_the_flow_id() -> None:
    digest = hashlib.sha256(FLOW.encode()).digest()
    assert telemetry.flow_trace_id(FLOW) == int.from_bytes(digest[:16], "big")
    assert telemetry.flow_span_id(FLOW) == int.from_bytes(digest[16:24], "big")


def test_ids_are_stable_across_processes_and_releases() -> None:
    # Literal values: changing the derivation would split every existing flow's trace.
    assert telemetry.flow_trace_id_hex(FLOW) == "93bd07f07300b7878f910d64b2cf63d4"
    assert f"{telemetry.flow_span_id(FLOW):016x}" == "864aeaede343c292"
    assert telemetry.attempt_traceparent(FLOW, "fetch", 1) == (
        "00-93bd07f07300b7878f910d64b2cf63d4-e34576a8509b1445-01"
    )


def test_the_flow_traceparent_is_what_injecting_the_flow_context_writes() -> None:
    injected = telemetry.inject({}, telemetry.flow_context(FLOW))
    assert injected == {"traceparent": telemetry.flow_traceparent(FLOW)}
    assert telemetry.flow_traceparent(FLOW) == (
        "00-93bd07f07300b7878f910d64b2cf63d4-864aeaede343c292-01"
    )


def test_each_attempt_and_phase_has_its_own_span_id() -> None:
    ids = {
        telemetry.flow_span_id(FLOW),
        telemetry.attempt_span_id(FLOW, "fetch", 1),
        telemetry.attempt_span_id(FLOW, "fetch", 2),
        telemetry.attempt_span_id(FLOW, "upper", 1),
        telemetry.attempt_span_id("hello-2", "fetch", 1),
        telemetry.phase_span_id(FLOW, "fetch", 1, "run"),
        telemetry.phase_span_id(FLOW, "fetch", 1, "queue-wait"),
    }
    assert len(ids) == 7
    assert telemetry.flow_trace_id("hello-2") != telemetry.flow_trace_id(FLOW)


# Flow traces --------------------------------------------------------------------------------


def test_spans_from_two_processes_land_in_the_flow_trace() -> None:
    scheduler, runner = Process("weir-scheduler"), Process("weir-runner")
    with telemetry.tracer(scheduler.provider).start_as_current_span(
        "decide", context=telemetry.flow_context(FLOW)
    ):
        pass
    with telemetry.tracer(runner.provider).start_as_current_span(
        "execute", context=telemetry.attempt_context(FLOW, "fetch", 1)
    ):
        pass
    telemetry.emit_flow_spans(failing_flow(), scheduler.provider)

    every = scheduler.spans + runner.spans
    assert {s.context.trace_id for s in every} == {telemetry.flow_trace_id(FLOW)}
    flow_span = scheduler.span("flow diamond")
    assert flow_span.parent is None
    assert flow_span.context.span_id == telemetry.flow_span_id(FLOW)
    decide, execute = scheduler.span("decide"), runner.span("execute")
    assert decide.parent is not None and decide.parent.span_id == flow_span.context.span_id
    assert execute.parent is not None
    assert execute.parent.span_id == telemetry.attempt_span_id(FLOW, "fetch", 1)
    fetch = next(s for s in scheduler.spans if s.name == "task fetch")
    assert fetch.context.span_id == execute.parent.span_id


def test_events_become_spans_with_their_true_times_and_attributes(process: Process) -> None:
    events = failing_flow()
    emitted = telemetry.emit_flow_spans(events, process.provider)

    # flow + fetch(3) + upper#1(3) + upper#2(3)
    assert emitted == len(process.spans) == 10
    flow_span = process.span("flow diamond")
    assert (flow_span.start_time, flow_span.end_time) == (ns(at(0)), ns(at(3.61)))
    assert flow_span.status.status_code is StatusCode.ERROR
    assert attrs(flow_span)["weir.flow_id"] == FLOW
    assert attrs(flow_span)["weir.flow.status"] == "failed"
    assert [(e.name, dict(e.attributes or {})) for e in flow_span.events] == [
        (
            "task_skipped",
            {"weir.task": "join", "weir.skip_reason": 'upstream task "upper" failed'},
        )
    ]

    second = next(
        s for s in process.spans if s.name == "task upper" and attrs(s)["weir.attempt"] == 2
    )
    assert (second.start_time, second.end_time) == (ns(at(2.5)), ns(at(3.6)))
    assert second.parent is not None
    assert second.parent.span_id == telemetry.flow_span_id(FLOW)
    assert second.status.status_code is StatusCode.ERROR
    assert attrs(second) == {
        "weir.flow_id": FLOW,
        "weir.task": "upper",
        "weir.attempt": 2,
        "weir.attempt_id": f"{FLOW}-upper-2",
        "weir.queue": "gpu",
        "weir.task.status": "failed",
        "weir.runner": "runner-b",
        "weir.exit_code": 2,
        "weir.error_type": "exit_code",
    }
    phases = {
        s.name: s
        for s in process.spans
        if s.parent is not None and s.parent.span_id == second.context.span_id
    }
    assert set(phases) == {"queue-wait", "run"}
    wait, run = phases["queue-wait"], phases["run"]
    assert (wait.start_time, wait.end_time) == (ns(at(2.5)), ns(at(2.9)))
    assert (run.start_time, run.end_time) == (ns(at(2.9)), ns(at(3.6)))
    assert run.context.span_id == telemetry.phase_span_id(FLOW, "upper", 2, "run")

    lost = next(
        s for s in process.spans if s.name == "task upper" and attrs(s)["weir.attempt"] == 1
    )
    assert attrs(lost)["weir.error_type"] == "lost"
    assert "weir.exit_code" not in attrs(lost)


def test_emitting_again_after_a_restart_gives_the_same_ids() -> None:
    before, after = Process(), Process()
    telemetry.emit_flow_spans(failing_flow(), before.provider)
    telemetry.emit_flow_spans(failing_flow(), after.provider)

    def ids(p: Process) -> set[tuple[int, int, str]]:
        return {(s.context.trace_id, s.context.span_id, s.name) for s in p.spans}

    assert ids(before) == ids(after)


def test_unfinished_flows_and_attempts_emit_nothing_yet(process: Process) -> None:
    events = failing_flow()[:6]  # upper #1 is running
    timeline = telemetry.flow_timeline(events)
    assert not timeline.finished
    running = timeline.attempt("upper", 1)
    assert running is not None and running.status == "running"
    assert telemetry.emit_attempt_spans(running, process.provider) == 0
    assert telemetry.emit_flow_spans(events, process.provider) == 3  # fetch only
    assert {s.name for s in process.spans} == {"task fetch", "queue-wait", "run"}


def test_a_succeeded_flow_span_is_not_an_error(process: Process) -> None:
    log = submitted(Log("ok-1"), name="tiny", tasks=("a",))
    log.add(ev.TaskDispatched, 0.1, task="a", attempt=1, queue="default")
    log.add(ev.TaskStarted, 0.2, task="a", attempt=1, runner="r")
    log.add(ev.TaskSucceeded, 0.3, task="a", attempt=1)
    log.add(ev.FlowSucceeded, 0.4)
    telemetry.emit_flow_spans(log.events, process.provider)
    assert process.span("flow tiny").status.status_code is StatusCode.UNSET
    assert process.span("task a").status.status_code is StatusCode.UNSET


def test_a_cancelled_flow_ends_its_running_attempt_and_lists_tasks_never_run(
    process: Process,
) -> None:
    log = submitted(Log("stop-1"), name="long", tasks=("a", "b"))
    log.add(ev.TaskDispatched, 0.1, task="a", attempt=1, queue="default")
    log.add(ev.TaskStarted, 0.2, task="a", attempt=1, runner="r")
    log.add(ev.FlowCancelRequested, 5.0, reason="operator")
    log.add(ev.TaskCancelled, 5.5, task="a", attempt=1, reason="operator")
    log.add(ev.TaskCancelled, 5.5, task="b", reason="operator")
    log.add(ev.FlowCancelled, 5.6, reason="operator")
    timeline = telemetry.flow_timeline(log.events)
    assert (timeline.status, timeline.finished) == ("cancelled", True)
    [attempt] = timeline.attempts
    assert attempt.status == "cancelled"
    assert attempt.run_s == pytest.approx(5.3)
    assert [s.task for s in timeline.skipped] == ["b"]
    telemetry.emit_flow_spans(log.events, process.provider)
    assert process.span("task a").status.status_code is StatusCode.ERROR
    assert process.span("flow long").status.status_code is StatusCode.ERROR
    assert "cancelled" in waterfall.render(log.events, width=80)


def test_every_attribute_emitted_is_in_the_documented_table(process: Process) -> None:
    telemetry.emit_flow_spans(failing_flow(), process.provider)
    with telemetry.publishing(subjects.SUBMIT, message_id=FLOW, provider=process.provider):
        pass
    used = {key for s in process.spans for key in attrs(s)}
    assert used <= telemetry.SPAN_ATTRIBUTES


# Propagation over NATS ----------------------------------------------------------------------


def test_inject_then_extract_round_trips_the_current_span(process: Process) -> None:
    with telemetry.tracer(process.provider).start_as_current_span("work") as span:
        headers = telemetry.inject({"Nats-Msg-Id": "x"})
    assert headers["Nats-Msg-Id"] == "x"
    assert headers["traceparent"].startswith("00-")
    extracted = trace.get_current_span(telemetry.extract(headers)).get_span_context()
    assert extracted.is_remote
    assert (extracted.trace_id, extracted.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )


def test_extract_of_a_message_without_headers_is_an_empty_context() -> None:
    for headers in (None, {}, {"traceparent": "garbage"}):
        ctx = telemetry.extract(headers)
        assert not trace.get_current_span(ctx).get_span_context().is_valid


def test_inject_without_a_span_adds_nothing_and_copies() -> None:
    original = {"Nats-Msg-Id": "x"}
    assert telemetry.inject(original) == original
    assert telemetry.inject(original) is not original


def test_attempt_traceparent_extracts_to_the_attempt_span() -> None:
    ctx = telemetry.extract({"traceparent": telemetry.attempt_traceparent(FLOW, "upper", 2)})
    span_context = trace.get_current_span(ctx).get_span_context()
    assert span_context.trace_id == telemetry.flow_trace_id(FLOW)
    assert span_context.span_id == telemetry.attempt_span_id(FLOW, "upper", 2)
    assert span_context.trace_flags.sampled


def test_publish_and_process_spans_follow_the_messaging_conventions() -> None:
    scheduler, runner = Process("weir-scheduler"), Process("weir-runner")
    subject = subjects.status(FLOW)
    with telemetry.publishing(
        subject,
        {"x-extra": "1"},
        message_id=f"{FLOW}-upper-2:started",
        parent=telemetry.attempt_context(FLOW, "upper", 2),
        provider=runner.provider,
    ) as headers:
        pass
    assert headers["Nats-Msg-Id"] == f"{FLOW}-upper-2:started"
    assert headers["x-extra"] == "1"
    with telemetry.receiving(subject, headers, provider=scheduler.provider):
        pass

    publish = runner.span("publish weir.status.{flow_id}")
    process = scheduler.span("process weir.status.{flow_id}")
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert publish.parent is not None
    assert publish.parent.span_id == telemetry.attempt_span_id(FLOW, "upper", 2)
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == telemetry.flow_trace_id(FLOW)
    assert attrs(publish) == {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.destination.template": "weir.status.{flow_id}",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.message.id": f"{FLOW}-upper-2:started",
    }
    assert attrs(process)["messaging.operation.type"] == "process"


def test_a_span_name_keeps_low_cardinality_subjects_as_they_are(process: Process) -> None:
    with telemetry.publishing(subjects.SUBMIT, provider=process.provider):
        pass
    with telemetry.receiving(subjects.dispatch("gpu", FLOW), None, provider=process.provider):
        pass
    assert {s.name for s in process.spans} == {
        "publish weir.cmd.submit",
        "process weir.dispatch.gpu.{flow_id}",
    }
    assert telemetry.subject_template(subjects.event(FLOW, "task_started")) == (
        "weir.events.{flow_id}.task_started"
    )
    on_exit = subjects.dispatch("gpu", FLOW, on_exit=True)
    assert subjects.is_on_exit_dispatch(on_exit)
    assert not subjects.is_on_exit_dispatch(subjects.dispatch("gpu", FLOW))
    assert telemetry.subject_template(on_exit) == "weir.dispatch.gpu.{flow_id}.on_exit"


def test_a_message_without_context_is_processed_under_the_fallback(process: Process) -> None:
    with telemetry.receiving(
        subjects.SUBMIT, {}, fallback=telemetry.flow_context(FLOW), provider=process.provider
    ):
        pass
    span = process.span("process weir.cmd.submit")
    assert span.parent is not None and span.parent.span_id == telemetry.flow_span_id(FLOW)


def test_a_submit_without_flow_id_is_processed_in_the_flow_trace_linked_to_the_client() -> None:
    client, scheduler = Process("weir-cli"), Process("weir-scheduler")
    with telemetry.publishing(subjects.SUBMIT, provider=client.provider) as headers:
        pass
    with telemetry.receiving(
        subjects.SUBMIT, headers, parent=telemetry.flow_context(FLOW), provider=scheduler.provider
    ):
        pass
    publish = client.span("publish weir.cmd.submit")
    process = scheduler.span("process weir.cmd.submit")
    assert process.context.trace_id == telemetry.flow_trace_id(FLOW)
    assert process.parent is not None and process.parent.span_id == telemetry.flow_span_id(FLOW)
    assert [link.context.span_id for link in process.links] == [publish.context.span_id]


def test_an_exception_in_a_handler_marks_its_span(process: Process) -> None:
    with (
        pytest.raises(RuntimeError),
        telemetry.receiving(subjects.SUBMIT, None, provider=process.provider),
    ):
        raise RuntimeError("bad spec")
    assert process.span("process weir.cmd.submit").status.status_code is StatusCode.ERROR


def test_without_a_recording_provider_no_span_is_built_but_the_trace_still_travels() -> None:
    """With no SDK provider (no exporter configured), the hot path skips the spans but
    carries the context on as OpenTelemetry's no-op tracer would: the parent's span context
    is current inside the block and goes into the headers published there."""
    nobody = trace.NoOpTracerProvider()
    attempt = telemetry.attempt_context(FLOW, "upper", 2)
    status = subjects.status(FLOW)
    with telemetry.publishing(status, message_id="m-1", parent=attempt, provider=nobody) as sent:
        assert trace.get_current_span().get_span_context().span_id == (
            telemetry.attempt_span_id(FLOW, "upper", 2)
        )
    assert sent == {
        "Nats-Msg-Id": "m-1",
        "traceparent": telemetry.attempt_traceparent(FLOW, "upper", 2),
    }
    assert not trace.get_current_span().get_span_context().is_valid  # detached again
    flow = telemetry.flow_context(FLOW)
    with telemetry.receiving(status, sent, fallback=flow, provider=nobody) as span:
        assert not span.is_recording()
        assert telemetry.inject()["traceparent"] == sent["traceparent"]  # carried wins
    with telemetry.receiving(status, {}, fallback=flow, provider=nobody):
        assert telemetry.inject()["traceparent"] == telemetry.flow_traceparent(FLOW)
    with telemetry.receiving(status, sent, parent=flow, provider=nobody):
        assert telemetry.inject()["traceparent"] == telemetry.flow_traceparent(FLOW)
    with telemetry.receiving(status, None, provider=nobody):
        assert telemetry.inject() == {}  # no context anywhere: none invented
    with pytest.raises(RuntimeError), telemetry.receiving(status, sent, provider=nobody):
        raise RuntimeError("handler failed")
    assert not trace.get_current_span().get_span_context().is_valid


# Setup from the environment -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({}, (), ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",), ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",), ()),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, (), ("otlp",)),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"},
            ("otlp",),
            (),
        ),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ("console", "otlp"), ()),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, (), ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, (), ()),
    ],
)
def test_exporters_only_where_the_environment_asks(
    env: dict[str, str], traces: tuple[str, ...], metrics: tuple[str, ...]
) -> None:
    assert telemetry.export_plan(env) == telemetry.ExportPlan(traces, metrics)


def test_setup_without_otel_variables_installs_nothing() -> None:
    before = trace.get_tracer_provider()
    plan = telemetry.setup("weir-test", env={})
    assert not plan.enabled
    assert trace.get_tracer_provider() is before  # (another test may have installed one)
    telemetry.shutdown()


def test_otel_service_name_overrides_the_service_name() -> None:
    res = telemetry.resource("weir-runner", {"OTEL_SERVICE_NAME": "runner-gpu"})
    assert res.attributes["service.name"] == "runner-gpu"
    assert telemetry.resource("weir-runner", {}).attributes["service.name"] == "weir-runner"


# Metrics ------------------------------------------------------------------------------------


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found[metric.name] = [
                    (dict(p.attributes or {}), p) for p in metric.data.data_points
                ]
    return found


def test_metrics_record_what_the_services_report() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    m = telemetry.Metrics(provider)
    depths = {"default": 3, "gpu": 0}
    m.observe_queue_depth(lambda: depths)
    m.flow_started()
    m.flow_started()
    m.flow_finished("succeeded")
    m.task_started("gpu", dispatch_latency_s=0.25)
    m.task_retried("gpu")
    m.task_finished("gpu", "failed", duration_s=4.0, error_type="lost")
    m.task_finished("gpu", "succeeded", duration_s=2.0)
    m.relay_published("event", 0.004)

    got = points(reader)
    assert [p.value for _, p in got["weir.flows.started"]] == [2]
    assert [(a, p.value) for a, p in got["weir.flows.finished"]] == [({"status": "succeeded"}, 1)]
    assert {(a["status"], a["error_type"]): p.value for a, p in got["weir.tasks.finished"]} == {
        ("failed", "lost"): 1,
        ("succeeded", ""): 1,
    }
    assert [(a, p.value) for a, p in got["weir.task.lost"]] == [({"queue": "gpu"}, 1)]
    assert [(a, p.value) for a, p in got["weir.task.retries"]] == [({"queue": "gpu"}, 1)]
    [(latency_attrs, latency)] = got["weir.task.dispatch_latency"]
    assert latency_attrs == {"queue": "gpu"}
    assert (latency.count, latency.sum) == (1, 0.25)
    assert sorted(p.sum for _, p in got["weir.task.duration"]) == [2.0, 4.0]
    assert [p.sum for _, p in got["weir.relay.lag"]] == [0.004]
    assert {a["queue"]: p.value for a, p in got["weir.queue.depth"]} == {"default": 3, "gpu": 0}
    assert set(got) == {m.name for m in telemetry.METRICS}
    provider.shutdown()


def test_prometheus_names_follow_the_collector_translation() -> None:
    assert telemetry.TASKS_FINISHED.prometheus == "weir_tasks_finished_total"
    assert telemetry.TASK_DURATION.prometheus_series == (
        "weir_task_duration_seconds_bucket",
        "weir_task_duration_seconds_sum",
        "weir_task_duration_seconds_count",
    )
    assert telemetry.QUEUE_DEPTH.prometheus == "weir_queue_depth"
    assert "weir_relay_lag_seconds_bucket" in telemetry.metric_names()


# Waterfall ----------------------------------------------------------------------------------


def test_waterfall_draws_one_row_per_attempt_on_a_common_axis() -> None:
    text = waterfall.render(failing_flow(), width=100)
    lines = text.splitlines()
    assert lines[0].startswith("flow diamond  hello-1  failed in 3.61s")
    rows = [line for line in lines if "|" in line][1:]  # after the axis header
    assert [row.split()[:3] for row in rows] == [
        ["fetch", "1", "ok"],
        ["upper", "1", "lost"],
        ["upper", "2", "failed"],
    ]
    assert "failed 2" in rows[2]
    assert all(len(line) <= 100 for line in lines)
    bars = [row[row.index("|") + 1 : row.rindex("|")] for row in rows]
    assert len({len(bar) for bar in bars}) == 1
    # fetch runs first, upper #2 runs last and reaches the end of the axis.
    assert bars[0].startswith(waterfall.RUN)
    assert bars[2].rstrip().endswith(waterfall.RUN)
    assert bars[2].index(waterfall.WAIT) > bars[1].index(waterfall.RUN)
    assert 'skipped join: upstream task "upper" failed' in text


def test_waterfall_of_a_running_flow_extends_to_now() -> None:
    events = failing_flow()[:6]
    text = waterfall.render(events, width=80, now=at(2.0))
    assert "running for 2.00s" in text
    upper = next(line for line in text.splitlines() if line.startswith("upper"))
    assert "running" in upper and waterfall.RUNNING in upper


def test_waterfall_shows_a_flow_without_attempts() -> None:
    text = waterfall.render(submitted(Log()).events, width=60)
    assert "no task attempts" in text


@pytest.mark.parametrize(("seconds", "shown"), [(0.0123, "12ms"), (1.5, "1.50s"), (125, "2m05s")])
def test_durations_are_short(seconds: float, shown: str) -> None:
    assert waterfall.duration(seconds) == shown


def test_every_decision_on_a_flow_is_an_event_of_its_span_and_a_line_of_its_waterfall(
    process: Process,
) -> None:
    """Pause, resume, update, an operator's retry, a condition read, a map's expansion and
    a cancel start or end no attempt: each still shows in the trace and in `weir trace`."""
    outputs = [{"name": "decision", "path": "d"}, {"name": "list", "path": "l"}]
    tasks = [
        task("src", outputs=outputs),
        task("go", depends=["src"], when='tasks.src.outputs.decision == "go"'),
        task("each", depends=["src"], map={"over": "list"}),
        task("load"),
        task("report", depends=["load"]),
    ]
    spec = msgspec.convert({"name": "steps", "tasks": tasks}, FlowSpec)
    log = Log("steps-1").add(ev.FlowSubmitted, 0.0, spec=spec)
    log.add(ev.FlowPaused, 0.1, reason="maintenance")
    log.add(ev.FlowResumed, 0.2, status="pending")
    log.add(ev.TaskConditionRead, 0.3, task="go", values={"decision": "go"})
    log.add(ev.TaskExpanded, 0.4, task="each", count=3, items=["a", "b", "c"])
    log.add(ev.TaskRetried, 0.5, task="load", tasks=["load", "report"], downstream=True)
    log.add(ev.FlowCancelRequested, 0.6, reason="operator")
    log.add(ev.FlowCancelled, 0.7, reason="operator")
    telemetry.emit_flow_spans(log.events, process.provider)
    events = [(e.name, dict(e.attributes or {})) for e in process.span("flow steps").events]
    texts = [
        "paused: maintenance",
        "resumed (pending)",
        "condition of go read: decision='go'",
        "each expanded into 3 instances",
        "retried load with downstream: planned again load, report",
        "cancel requested: operator",
    ]
    kinds = ["flow_paused", "flow_resumed", "task_condition_read", "task_expanded"]
    kinds += ["task_retried", "flow_cancel_requested"]
    assert [(name, attrs[telemetry.ATTR_DECISION]) for name, attrs in events] == list(
        zip(kinds, texts, strict=True)
    )
    assert [attrs[telemetry.ATTR_TASK] for _, attrs in events] == ["", "", "go", "each", "load", ""]
    shown = waterfall.render(log.events, width=100)
    assert all(text in shown for text in texts), shown

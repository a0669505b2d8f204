"""Installing tracer and meter providers from the standard `OTEL_*` variables.

Exporters are configured only when the environment asks for one; with none set, `setup`
installs nothing and every telemetry call costs next to nothing.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Tracer, TracerProvider

from weir.telemetry.ids import FlowIdGenerator

log = logging.getLogger("weir.telemetry")

INSTRUMENTATION_NAME = "weir"

_OTLP_PROTOCOLS_INSTALLED = ("http/protobuf",)


@dataclass(frozen=True)
class ExportPlan:
    """Which exporters the environment asks for (`otlp`, `console`), per signal."""

    traces: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.traces or self.metrics)


def _exporters(env: Mapping[str, str], signal: str) -> tuple[str, ...]:
    names = env.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip()
    if not names:
        # The spec's default is `otlp`; ours is to export only where an endpoint was given,
        # so a laptop without a collector does not log connection errors forever.
        endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ("otlp",) if endpoint else ()
    chosen: list[str] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("otlp", "console") and name not in chosen:
            chosen.append(name)
        elif name != "none":
            log.warning("OTEL_%s_EXPORTER: %r is not supported (otlp, console, none)", signal, name)
    return tuple(chosen)


def export_plan(env: Mapping[str, str] | None = None) -> ExportPlan:
    """Read `OTEL_SDK_DISABLED`, `OTEL_{TRACES,METRICS}_EXPORTER` and the OTLP endpoints."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ExportPlan()
    return ExportPlan(traces=_exporters(env, "traces"), metrics=_exporters(env, "metrics"))


def resource(service_name: str, env: Mapping[str, str] | None = None) -> Resource:
    """`service.name` (overridden by `OTEL_SERVICE_NAME`) plus `OTEL_RESOURCE_ATTRIBUTES`."""
    env = os.environ if env is None else env
    name = env.get("OTEL_SERVICE_NAME") or service_name
    return Resource.create({"service.name": name})


def new_tracer_provider(
    service_name: str, *processors: SpanProcessor, env: Mapping[str, str] | None = None
) -> SdkTracerProvider:
    """An SDK tracer provider that can give spans their flow-derived ids (tests use it with
    an in-memory exporter; `setup` with the exporters the environment asks for)."""
    provider = SdkTracerProvider(
        resource=resource(service_name, env), id_generator=FlowIdGenerator()
    )
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


@dataclass
class _Installed:
    tracer_provider: SdkTracerProvider | None = None
    meter_provider: SdkMeterProvider | None = None


_installed = _Installed()


def setup(service_name: str, env: Mapping[str, str] | None = None) -> ExportPlan:
    """Install global tracer and meter providers exporting where the environment says.

    Call once at process start (OpenTelemetry refuses to replace a global provider). With no
    `OTEL_*` exporter or endpoint set nothing is installed: spans are no-ops that still carry
    the flow's trace context on to NATS headers and task processes. Only OTLP over
    http/protobuf is installed; `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` is reported and ignored.
    """
    env = os.environ if env is None else env
    plan = export_plan(env)
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if plan.enabled and protocol not in _OTLP_PROTOCOLS_INSTALLED:
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not installed; using http/protobuf", protocol
        )
    if plan.traces:
        processors = [BatchSpanProcessor(_span_exporter(name)) for name in plan.traces]
        tracer_provider = new_tracer_provider(service_name, *processors, env=env)
        trace.set_tracer_provider(tracer_provider)
        _installed.tracer_provider = tracer_provider
    if plan.metrics:
        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(_metric_exporter(name)) for name in plan.metrics
        ]
        meter_provider = SdkMeterProvider(
            resource=resource(service_name, env), metric_readers=readers
        )
        otel_metrics.set_meter_provider(meter_provider)
        _installed.meter_provider = meter_provider
    if plan.enabled:
        log.info(
            "telemetry exporting",
            extra={"traces": ",".join(plan.traces), "metrics": ",".join(plan.metrics)},
        )
    return plan


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, TLS: from OTEL_EXPORTER_OTLP_*


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def shutdown() -> None:
    """Flush and stop what `setup` installed (spans and a last metrics export)."""
    if _installed.tracer_provider is not None:
        _installed.tracer_provider.shutdown()
        _installed.tracer_provider = None
    if _installed.meter_provider is not None:
        _installed.meter_provider.shutdown()
        _installed.meter_provider = None


def recording_tracer(provider: TracerProvider | None = None) -> Tracer | None:
    """weir's tracer when its spans are recorded (`provider`, or the global one, is an SDK
    provider); None when every span would be a no-op (no provider installed: `setup` found
    no exporter), so that the hot path can skip building spans nobody records."""
    provider = provider or trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return _tracer_of(provider)


def tracer(provider: TracerProvider | None = None) -> Tracer:
    """weir's tracer, from `provider` or the global one (made once per provider: every
    message published or received asks for it)."""
    return _tracer_of(provider or trace.get_tracer_provider())


@functools.lru_cache(maxsize=16)
def _tracer_of(provider: TracerProvider) -> Tracer:
    return trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=provider)

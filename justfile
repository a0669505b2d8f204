# weir tasks. Run through ./just (it bootstraps .venv and this tool).

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Start a private Postgres + NATS, both services, submit examples/diamond.yaml and follow it.
demo: bytecode
    python -m weir.devstack demo examples/diamond.yaml

# Run the same stack in the foreground for use with `weir` (Ctrl-C stops it).
up:
    python -m weir.devstack up

# Lint, type-check and run the whole test suite (unit, integration, e2e, kill -9). The tests
# mostly wait on services, so three workers share two cores (WEIR_TEST_WORKERS to change);
# the 15 slowest steps are listed at the end, to keep the suite's time in view.
test: lint bytecode
    python -m pytest -q -n "${WEIR_TEST_WORKERS:-3}" --dist worksteal --durations=15

# Compile weir's own modules ahead, so that the many processes a run starts (services, `weir`
# commands, pod helpers) do not each compile them again: where PYTHONDONTWRITEBYTECODE is set,
# Python never caches them itself (about 0.45 s of CPU per process on a 2-core machine).
bytecode:
    python -m compileall -q -j 0 services shared proto

# Benchmarks (not part of test): throughput, latency, scale, and peers side by side.
bench *ARGS:
    uv pip install --quiet --require-hashes -r requirements/bench.lock
    python -m bench {{ARGS}}

# ruff + mypy --strict
lint:
    ruff check .
    ruff format --check .
    mypy

# Regenerate proto/schema/*.json from the msgspec types.
schema:
    python -m weir_proto.schema proto/schema

# Lock requirements/{dev,bench}.lock and tools.txt with hashes after changing pyproject.toml
# (keeps the pinned versions that still fit; `./just lock --upgrade` moves them all on purpose).
lock *ARGS:
    requirements/lock {{ARGS}}

fmt:
    ruff format .
    ruff check --fix .

# Long chaos run: kill -9, NATS/Postgres restarts, 2+2 replicas, then a memory soak (WEIR_CHAOS_SEED replays).
chaos:
    WEIR_CHAOS_LONG=1 python -m pytest tests/chaos -m chaos_long -q -s -p no:cacheprovider --basetemp=/tmp/weir-chaos

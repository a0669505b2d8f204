"""Outputs go to the NATS Object Store and come back as inputs: streamed, verified, binary
safe, reused by reruns, listed and fetched with `weir artifacts`."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from weir.artifacts import (
    ArtifactChecksumError,
    ArtifactStore,
    delete_flow_artifacts,
)
from weir.client import Client
from weir.config import Settings
from weir.jetstream import close, connect
from weir_runner import sandbox

from tests.artifacts.helpers import (
    EVERY_BYTE,
    PY,
    assert_round_tripped,
    finish,
    measured_transfer,
    round_trip_flow,
    shell,
    task,
    weir,
)

LARGE_BYTES = 64 * 1024 * 1024


async def test_outputs_feed_inputs_through_the_object_store(
    client: Client, settings: Settings
) -> None:
    spec = {
        "name": "handoff",
        "tasks": [
            shell(
                "make",
                "mkdir -p out && echo payload > out/data.txt",
                outputs=[{"name": "data", "path": "out/data.txt"}],
            ),
            shell(
                "use",
                'test "$(cat in/deep/data.txt)" = payload && tr a-z A-Z < in/deep/data.txt > up',
                depends=["make"],
                inputs=[{"from": "data", "path": "in/deep/data.txt"}],
                outputs=[{"name": "upper", "path": "up"}],
            ),
            # An input lands where its task says: deep in new directories, or at the top.
            shell(
                "read",
                'test "$(cat in.txt)" = payload',
                depends=["make"],
                inputs=[{"from": "data", "path": "in.txt"}],
            ),
        ],
    }
    flow_id, outcome, view = await finish(client, spec)

    assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    listed = await store.list(flow_id)
    assert [(a.name, a.size) for a in listed] == [("data", 8), ("upper", 8)]
    assert listed[0].sha256 == hashlib.sha256(b"payload\n").hexdigest()
    # No shared directory is involved any more: the runner dir holds only attempts.
    assert not (Path(settings.runner_dir).parent / "artifacts").exists()


async def test_text_and_binary_artifacts_round_trip_through_three_tasks(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    # The same flow runs on the Kubernetes executor in tests/kubernetes/test_artifact_flows.py.
    flow_id, outcome, view = await finish(client, round_trip_flow())

    assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]
    await assert_round_tripped(
        ArtifactStore(client.js, settings.artifacts_bucket), flow_id, tmp_path
    )


async def test_large_artifact_streams_with_bounded_memory(
    settings: Settings, tmp_path: Path
) -> None:
    nc = await connect(settings.nats_url, "test-large")
    try:
        store = ArtifactStore(nc.jetstream(), settings.artifacts_bucket)
        moved = await measured_transfer(store, tmp_path, LARGE_BYTES)
    finally:
        await close(nc)

    assert moved.uploaded.size == LARGE_BYTES and moved.uploaded.sha256 == moved.digest
    assert moved.upload_peak < LARGE_BYTES / 8
    assert moved.download_peak < LARGE_BYTES / 8


async def test_checksum_mismatch_is_detected_and_leaves_no_file(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(EVERY_BYTE)
    nc = await connect(settings.nats_url, "test-checksum")
    try:
        js = nc.jetstream()
        store = ArtifactStore(js, settings.artifacts_bucket)
        await store.upload("f1", "data", source)
        # Rewrite the metadata with another digest, as bit rot or tampering would.
        name = base64.urlsafe_b64encode(b"f1/data").decode()
        subject = f"$O.{settings.artifacts_bucket}.M.{name}"
        meta = await js.get_last_msg(store.stream, subject)
        info = json.loads(meta.data or b"{}")
        wrong = base64.urlsafe_b64encode(hashlib.sha256(b"something else").digest()).decode()
        info["digest"] = f"SHA-256={wrong}"
        await js.publish(subject, json.dumps(info).encode(), headers={"Nats-Rollup": "sub"})

        with pytest.raises(ArtifactChecksumError, match='artifact "data" of flow f1 is corrupt'):
            await store.download("f1", "data", tmp_path / "out" / "data.bin")
    finally:
        await close(nc)
    assert list((tmp_path / "out").iterdir()) == []


async def test_weir_artifacts_ls_and_get(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    spec = {
        "name": "for-cli",
        "tasks": [
            shell(
                "make",
                f'{PY} -c "import sys; sys.stdout.buffer.write(bytes(range(256)))" > r.bin',
                outputs=[{"name": "report", "path": "r.bin"}],
            )
        ],
    }
    flow_id, outcome, _ = await finish(client, spec)
    assert outcome == "flow_succeeded"

    listed = await weir(settings.nats_url, "artifacts", "ls", flow_id)
    assert listed.code == 0, listed.stderr
    assert b"report" in listed.stdout and b"256 B" in listed.stdout
    as_json = json.loads(
        (await weir(settings.nats_url, "artifacts", "ls", flow_id, "--json")).stdout
    )
    assert [(a["name"], a["size"]) for a in as_json] == [("report", 256)]
    target = tmp_path / "got" / "report.bin"
    got = await weir(settings.nats_url, "artifacts", "get", flow_id, "report", "-o", str(target))
    assert got.code == 0, got.stderr
    assert target.read_bytes() == bytes(range(256))
    piped = await weir(settings.nats_url, "artifacts", "get", flow_id, "report", "-o", "-")
    assert piped.stdout == bytes(range(256))
    missing = await weir(settings.nats_url, "artifacts", "get", flow_id, "nope")
    assert missing.code == 1
    assert f'flow {flow_id} has no artifact "nope"' in missing.stderr


async def test_deleting_a_flows_artifacts_keeps_other_flows(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    nc = await connect(settings.nats_url, "test-prune")
    try:
        js = nc.jetstream()
        store = ArtifactStore(js, settings.artifacts_bucket)
        for flow, name in [("gone", "a"), ("gone", "b"), ("kept", "a"), ("gone-not", "a")]:
            await store.upload(flow, name, source)
        assert await delete_flow_artifacts(js, "gone", settings.artifacts_bucket) == 2
        assert [(a.flow_id, a.name) for a in await store.list()] == [
            ("gone-not", "a"),
            ("kept", "a"),
        ]
    finally:
        await close(nc)


needs_sandbox = pytest.mark.skipif(
    not sandbox.available(),
    reason="absolute paths on the local executor need user + mount namespaces, which this "
    "machine does not allow",
)
FLOWMIUM_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flowmium" / "my_flow.yaml"


@needs_sandbox
async def test_flowmium_example_runs_unchanged_on_the_local_executor(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    # Absolute paths at /: files of the attempt, mounted there in the task's sandbox only.
    flow_id, outcome, view = await finish(client, yaml.safe_load(FLOWMIUM_EXAMPLE.read_text()))

    assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    for name, expected in [
        ("foo-output", b"Hallo world\n"),
        ("replace-letter-a-output", b"Hello world\n"),
    ]:
        await store.download(flow_id, name, tmp_path / name)
        assert (tmp_path / name).read_bytes() == expected
    for path in ("/task-output-foo.txt", "/task-input.txt", "/task-output-replace-letter-a.txt"):
        assert not Path(path).exists(), f"{path} was written on the host"


@needs_sandbox
async def test_absolute_paths_mix_with_relative_ones_and_shadow_host_files(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    host_file = tmp_path / "host.conf"  # a file of the host the task's output path names
    host_file.write_text("the host's own\n")
    deep = tmp_path / "not-on-the-host" / "deep.txt"
    spec = {
        "name": "mixed",
        "tasks": [
            shell(
                "make",
                f"echo sandboxed > {host_file} && echo rel > rel.txt && "
                f"mkdir -p {deep.parent} && echo deep > {deep}",
                outputs=[
                    {"name": "shadow", "path": str(host_file)},
                    {"name": "rel", "path": "rel.txt"},
                    {"name": "deep", "path": str(deep)},
                ],
            ),
            shell(
                "use",
                'test "$(cat /in/shadow)$(cat in.txt)" = sandboxedrel',
                depends=["make"],
                inputs=[
                    {"from": "shadow", "path": "/in/shadow"},
                    {"from": "rel", "path": "in.txt"},
                ],
            ),
        ],
    }
    flow_id, outcome, view = await finish(client, spec)

    assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]
    assert host_file.read_text() == "the host's own\n"
    assert not deep.parent.exists() and not Path("/in").exists()
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    await store.download(flow_id, "deep", tmp_path / "deep")
    assert (tmp_path / "deep").read_bytes() == b"deep\n"


@needs_sandbox
async def test_a_task_with_its_own_path_still_gets_its_sandbox(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    # The sandbox's tools are found on a fixed path, never through the task's PATH.
    spec = {
        "name": "own-path",
        "tasks": [
            task(
                "a",
                "/bin/sh",
                "-c",
                'echo "$PATH" > /out.txt',
                env=[{"name": "PATH", "value": "/nowhere"}],
                outputs=[{"name": "o", "path": "/out.txt"}],
            )
        ],
    }
    flow_id, outcome, view = await finish(client, spec)

    assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]
    await ArtifactStore(client.js, settings.artifacts_bucket).download(flow_id, "o", tmp_path / "o")
    assert (tmp_path / "o").read_text() == "/nowhere\n"  # and its PATH is its own


@needs_sandbox
async def test_absolute_output_the_task_never_wrote_fails_naming_its_path(client: Client) -> None:
    spec = {
        "name": "forgot",
        "tasks": [task("a", "true", outputs=[{"name": "x", "path": "/results/x.json"}])],
    }
    _, outcome, view = await finish(client, spec)

    assert outcome == "flow_failed"
    (a,) = view.tasks
    assert a.error_type == "executor"
    assert a.error_message == (
        'task "a": output "x" expected the task to write \'/results/x.json\', but it never did'
    )


@needs_sandbox
async def test_a_sandbox_that_cannot_be_set_up_is_an_executor_error(
    client: Client, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    spec = {
        "name": "unmountable",
        "tasks": [task("a", "true", outputs=[{"name": "o", "path": f"{a_file}/out.txt"}])],
    }
    _, outcome, view = await finish(client, spec)

    assert outcome == "flow_failed"
    (a,) = view.tasks
    assert a.error_type == "executor" and a.exit_code is None
    assert (a.error_message or "").startswith(
        'task "a": its sandbox could not be set up, so it did not run ('
    )
    assert "weir sandbox: setting up the task's mounts failed" in (a.error_message or "")
    assert a_file.read_text() == "not a directory\n"

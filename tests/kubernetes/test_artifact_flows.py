"""Artifacts on the Kubernetes executor, end to end: the test kubelet runs every container of
a task's pod (the helper that downloads inputs, the task, the helper that uploads outputs)
with the pod's volumes mounted at their paths, in order, as a kubelet does (though as one
user with its capabilities: ownership and runAsUser are not exercised here). The helpers
reach NATS (or S3) through the Secret a deployment provides."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from weir.artifacts import ArtifactStore, delete_flow_artifacts
from weir.artifacts_s3 import S3ArtifactStore
from weir.client import Client
from weir.config import Settings
from weir.s3_storage import S3Storage
from weir_runner import sandbox
from weir_runner.executors.kubernetes import KubernetesConfig, KubernetesExecutor

from tests.artifacts.helpers import assert_round_tripped, round_trip_flow
from tests.conftest import Services
from tests.flows import waits_for
from tests.kubernetes.cluster import ApiServerProcess, TestKubelet
from tests.kubernetes.conftest import NAMESPACE, POD_RESYNC
from tests.kubernetes.test_flows import ONCE, WAIT, outcome, pod_shell, pod_task, run_flow, tasks_of
from tests.s3 import on_storage, s3_endpoint, storage

pytestmark = pytest.mark.skipif(
    not sandbox.available(),
    reason="the test kubelet mounts volumes in a user + mount namespace, which this "
    "machine does not allow (unshare --user --map-root-user --mount)",
)

__all__ = ["s3_endpoint", "storage"]  # fixtures

REPO = Path(__file__).resolve().parents[2]
FLOWMIUM_EXAMPLE = REPO / "examples" / "flowmium" / "my_flow.yaml"
FLOWMIUM_ORIGINAL = REPO.parent / "shared" / "flowmium-examples" / "my_flow.yaml"


@pytest.fixture(autouse=True)
def data_secret(apiserver: ApiServerProcess, settings: Settings) -> None:
    """What an install creates once: the Secret the helper containers read NATS's URL from."""
    apiserver.handler.put_secret(NAMESPACE, settings.kube_data_secret, {"url": settings.nats_url})


def store(client: Client, settings: Settings) -> ArtifactStore:
    return ArtifactStore(client.js, settings.artifacts_bucket)


async def test_text_and_binary_artifacts_round_trip_through_three_pods(
    kube_client: Client, kube_settings: Settings, apiserver: ApiServerProcess, tmp_path: Path
) -> None:
    # The same flow as on the local executor (tests/artifacts/test_artifacts.py).
    flow_id = await kube_client.submit(round_trip_flow())
    ran = await outcome(kube_client, flow_id)

    assert ran.status == "succeeded", ran.tasks
    await assert_round_tripped(store(kube_client, kube_settings), flow_id, tmp_path)
    # Each pod ran the helper, the task, and (for outputs) the uploader, in that order.
    pod = apiserver.handler.pod_history(NAMESPACE, f"{flow_id}-transform-1")[-1]
    assert [c["name"] for c in pod["status"]["initContainerStatuses"]] == ["weir-inputs", "task"]
    assert all(
        c["state"]["terminated"]["exitCode"] == 0
        for c in pod["status"]["initContainerStatuses"] + pod["status"]["containerStatuses"]
    )


async def test_flowmium_example_runs_unchanged(
    kube_client: Client, kube_settings: Settings, tmp_path: Path
) -> None:
    text = FLOWMIUM_EXAMPLE.read_text()
    if FLOWMIUM_ORIGINAL.exists():
        assert text == FLOWMIUM_ORIGINAL.read_text(), "examples/flowmium is flowmium's file as is"
    # Absolute paths at the image's root: each is a file of the pod's volume mounted there,
    # so the image's own / (with the `sh` the commands need) stays as it is.
    flow_id = await kube_client.submit(yaml.safe_load(text))
    ran = await outcome(kube_client, flow_id)

    assert ran.status == "succeeded", ran.tasks
    artifacts = store(kube_client, kube_settings)
    for name, expected in [
        ("foo-output", b"Hallo world\n"),
        ("replace-letter-a-output", b"Hello world\n"),
    ]:
        await artifacts.download(flow_id, name, tmp_path / name)
        assert (tmp_path / name).read_bytes() == expected


async def test_output_the_task_never_wrote_fails_naming_its_path(kube_client: Client) -> None:
    forgetful = pod_shell(
        "report",
        "echo working",
        retry=ONCE,
        outputs=[{"name": "report", "path": "/results/report.json"}],
    )
    ran = await run_flow(kube_client, {"name": "forgot", "tasks": [forgetful]})

    failed = tasks_of(ran)["report"]
    assert ran.status == "failed" and failed.error_type == "executor"
    assert failed.error_message == (
        'task "report": its outputs could not be stored (Error: weir artifacts upload: '
        "output \"report\" expected the task to write '/results/report.json', but it never did)"
        "; output ends: working"
    )


async def test_an_empty_output_the_task_did_write_is_stored(
    kube_client: Client, kube_settings: Settings
) -> None:
    empty = pod_shell(
        "empty", ": > /empty.txt", outputs=[{"name": "nothing", "path": "/empty.txt"}]
    )
    flow_id = await kube_client.submit({"name": "empty", "tasks": [empty]})
    ran = await outcome(kube_client, flow_id)

    assert ran.status == "succeeded", ran.tasks
    [stored] = await store(kube_client, kube_settings).list(flow_id)
    assert (stored.name, stored.size) == ("nothing", 0)


def held_handover(
    name: str, content: str, release: Path, use_retry: dict[str, Any]
) -> dict[str, Any]:
    """`make` writes /x, `gate` waits until `release` exists, `use` reads /x as its input:
    between make's upload and use's download, the store is the test's to tamper with."""
    return {
        "name": name,
        "tasks": [
            pod_shell("make", f"echo {content} > /x", outputs=[{"name": "x", "path": "/x"}]),
            pod_shell("gate", waits_for(release), depends=["make"]),
            pod_task(
                "use",
                "cat",
                "/x",
                depends=["gate"],
                retry=use_retry,
                inputs=[{"from": "x", "path": "/x"}],
            ),
        ],
    }


async def submit_held(client: Client, kubelet: TestKubelet, spec: dict[str, Any]) -> str:
    """Submit a `held_handover` flow; its id, once its gate runs (make's output is stored)."""
    flow_id = await client.submit(spec)
    await asyncio.wait_for(kubelet.started_event(f"{flow_id}-gate-1").wait(), WAIT)
    return flow_id


async def test_input_gone_from_the_store_fails_before_the_task_runs(
    kube_client: Client, kube_settings: Settings, kubelet: TestKubelet, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    flow_id = await submit_held(kube_client, kubelet, held_handover("gone", "x", release, ONCE))
    await delete_flow_artifacts(kube_client.js, flow_id, kube_settings.artifacts_bucket)
    release.touch()
    ran = await outcome(kube_client, flow_id)

    failed = tasks_of(ran)["use"]
    assert ran.status == "failed" and failed.error_type == "executor"
    assert failed.error_message.startswith(
        'task "use": its inputs could not be downloaded (Error: weir artifacts download: '
    )
    assert f"flow {flow_id}" in failed.error_message and '"x"' in failed.error_message
    assert kubelet.runs[f"{flow_id}-use-1"] == 0  # the task's container never started


async def test_input_swapped_in_the_store_is_refused_before_the_task_runs(
    kube_client: Client, kube_settings: Settings, kubelet: TestKubelet, tmp_path: Path
) -> None:
    """The upload container reports the digest it sent; the download container of the
    downstream pod checks the object against it, whatever the store's metadata says."""
    release = tmp_path / "release"
    spec = held_handover("swapped", "genuine", release, {"max_attempts": 3})
    flow_id = await submit_held(kube_client, kubelet, spec)
    [make] = [t for t in (await kube_client.get(flow_id)).tasks if t.name == "make"]
    [recorded] = make.outputs
    assert (recorded.name, recorded.size) == ("x", len(b"genuine\n"))
    objects = await kube_client.js.object_store(kube_settings.artifacts_bucket)
    await objects.put(f"{flow_id}/x", b"forged\n")  # metadata rewritten to match
    release.touch()
    ran = await outcome(kube_client, flow_id)

    failed = tasks_of(ran)["use"]
    assert ran.status == "failed" and failed.error_type == "artifact_integrity"
    [use] = [t for t in (await kube_client.get(flow_id)).tasks if t.name == "use"]
    assert (use.attempt, use.failures[0].error_type) == (1, "artifact_integrity")  # not retried
    assert "is not the one its task uploaded" in failed.error_message
    assert recorded.sha256 in failed.error_message
    assert kubelet.runs[f"{flow_id}-use-1"] == 0  # the task's container never started


async def test_the_same_flow_round_trips_through_s3_on_pods(
    kube_settings: Settings,
    apiserver: ApiServerProcess,
    kubelet: TestKubelet,
    storage: S3Storage,
    tmp_path: Path,
) -> None:
    # WEIR_ARTIFACTS_URL=s3://...: the helpers get the bucket's location as values and its
    # keys as references to the data Secret, and never talk to NATS.
    on_s3 = on_storage(kube_settings, storage)
    apiserver.handler.put_secret(
        NAMESPACE,
        on_s3.kube_data_secret,
        {
            "aws-access-key-id": storage.access_key_id,
            "aws-secret-access-key": storage.secret_access_key,
        },
    )
    config = replace(KubernetesConfig.from_settings(on_s3), pod_resync=POD_RESYNC)
    executor = KubernetesExecutor(config)
    services = await Services.start(on_s3, executor)
    try:
        async with await Client.connect(on_s3.nats_url) as client:
            flow_id = await client.submit(round_trip_flow())
            ran = await outcome(client, flow_id)
            assert ran.status == "succeeded", ran.tasks
            assert await store(client, on_s3).list(flow_id) == []  # nothing in NATS
    finally:
        await services.stop()
        await executor.close()
    await assert_round_tripped(S3ArtifactStore(storage), flow_id, tmp_path)
    pod = apiserver.handler.pod_history(NAMESPACE, f"{flow_id}-check-1")[-1]
    helper_env = {e["name"]: e for e in pod["spec"]["initContainers"][0]["env"]}
    assert helper_env["WEIR_ARTIFACTS_URL"]["value"] == storage.url
    assert "value" not in helper_env["AWS_SECRET_ACCESS_KEY"]
    assert storage.secret_access_key not in str(pod["spec"])


async def test_a_mapped_task_runs_one_pod_per_item_and_hands_on_their_outputs_in_order(
    kube_client: Client, kube_settings: Settings, apiserver: ApiServerProcess, tmp_path: Path
) -> None:
    spec = {
        "id": "map-pods",
        "name": "map-pods",
        "tasks": [
            pod_shell(
                "list",
                """printf '["x", "y"]' > /out/items.json""",
                outputs=[{"name": "items", "path": "/out/items.json"}],
                retry=ONCE,
            ),
            pod_shell(
                "echo",
                'printf "%s!" "{{ item }}" > /out/said.txt',
                depends=["list"],
                map={"over": "items"},
                outputs=[{"name": "said", "path": "/out/said.txt"}],
                retry=ONCE,
            ),
        ],
    }
    ran = await run_flow(kube_client, spec)
    assert ran.status == "succeeded", ran.tasks
    assert {"echo[0]", "echo[1]", "echo"} <= set(tasks_of(ran))
    target = tmp_path / "said.json"
    await store(kube_client, kube_settings).download("map-pods", "said", target)
    assert target.read_text() == '["x!","y!"]'

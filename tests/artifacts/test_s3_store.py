"""Artifacts in S3-compatible storage (`WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX`): the same
store interface as the NATS Object Store's, verified by SHA-256, streamed in parts, and used
by flows, the pods' helper and the CLI.

The S3 server is moto's standalone server, a real HTTP S3 API in its own process (so the
memory measured here is the client's alone); nothing is mocked in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from weir.artifacts import (
    ArtifactChecksumError,
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    artifact_store,
    delete_flow_artifacts,
)
from weir.artifacts_s3 import DIGEST_METADATA, MULTIPART_CHUNK, S3ArtifactStore, _client
from weir.client import Client
from weir.config import ConfigError, Settings
from weir.s3_storage import S3Storage
from weir_runner.executors.kubernetes.manifest import ArtifactPlumbing, pod_manifest

from tests.artifacts.helpers import (
    EVERY_BYTE,
    PY,
    TEXT,
    assert_round_tripped,
    finish,
    measured_transfer,
    round_trip_flow,
    weir,
)
from tests.conftest import Services
from tests.flows import dispatch_of
from tests.s3 import CREDENTIALS, on_storage, s3_endpoint, storage

__all__ = ["s3_endpoint", "storage"]  # fixtures

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LARGE_BYTES = 64 * 1024 * 1024
HELPER_TIMEOUT = 60.0
UNREACHABLE_NATS = "nats://127.0.0.1:9"
"""Where the S3-only programs are told NATS is: they must never need it."""


@pytest.fixture
def store(storage: S3Storage) -> S3ArtifactStore:
    return S3ArtifactStore(storage)


def raw(storage: S3Storage) -> S3Client:
    """boto3 itself, to look at (and tamper with) the objects behind the store's back."""
    return _client(storage)


def s3_env(storage: S3Storage) -> dict[str, str]:
    """The environment that selects `storage`, as a deployment sets it."""
    return {
        "WEIR_ARTIFACTS_URL": storage.url,
        "WEIR_S3_ENDPOINT_URL": storage.endpoint_url,
        "AWS_REGION": storage.region,
        "AWS_ACCESS_KEY_ID": storage.access_key_id,
        "AWS_SECRET_ACCESS_KEY": storage.secret_access_key,
        "WEIR_NATS_URL": UNREACHABLE_NATS,
    }


async def test_text_and_binary_artifacts_round_trip_with_their_digest_recorded(
    store: S3ArtifactStore, storage: S3Storage, tmp_path: Path
) -> None:
    text, binary = tmp_path / "text.txt", tmp_path / "raw.bin"
    text.write_text(TEXT)
    binary.write_bytes(EVERY_BYTE)

    stored = await store.upload("flow-1", "text", text)
    await store.upload("flow-1", "raw", binary)
    got_text = await store.download("flow-1", "text", tmp_path / "back" / "text.txt")
    await store.download("flow-1", "raw", tmp_path / "back" / "raw.bin")

    assert (tmp_path / "back" / "text.txt").read_text() == TEXT
    assert (tmp_path / "back" / "raw.bin").read_bytes() == EVERY_BYTE
    assert stored.sha256 == got_text.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
    assert (await store.info("flow-1", "raw")).size == len(EVERY_BYTE)
    head = raw(storage).head_object(Bucket=storage.bucket, Key="deploy/prod/flow-1/raw")
    assert head["Metadata"][DIGEST_METADATA] == hashlib.sha256(EVERY_BYTE).hexdigest()
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["raw.bin", "text.txt"]


async def test_a_64_mib_artifact_moves_in_parts_with_bounded_memory(
    store: S3ArtifactStore, storage: S3Storage, tmp_path: Path
) -> None:
    moved = await measured_transfer(store, tmp_path, LARGE_BYTES)

    assert moved.uploaded.size == moved.downloaded.size == LARGE_BYTES
    assert moved.uploaded.sha256 == moved.downloaded.sha256 == moved.digest
    # A multipart upload's ETag ends in the number of its parts.
    head = raw(storage).head_object(Bucket=storage.bucket, Key=store.key("big-flow", "large"))
    assert head["ETag"].strip('"').endswith(f"-{LARGE_BYTES // MULTIPART_CHUNK}")
    # Measured ~5.5 MB each way; a quarter of the file leaves room for a loaded machine
    # (boto3 may queue a few parts' worth of reads) and still fails any whole-file buffer.
    assert moved.upload_peak < LARGE_BYTES / 4
    assert moved.download_peak < LARGE_BYTES / 4


async def test_a_corrupted_object_fails_the_download_and_leaves_no_file(
    store: S3ArtifactStore, storage: S3Storage, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(EVERY_BYTE)
    uploaded = await store.upload("f1", "data", source)
    # Other bytes under the recorded digest, as bit rot or tampering would leave them.
    flipped = bytes([EVERY_BYTE[0] ^ 1]) + EVERY_BYTE[1:]
    raw(storage).put_object(
        Bucket=storage.bucket,
        Key=store.key("f1", "data"),
        Body=flipped,
        Metadata={DIGEST_METADATA: uploaded.sha256},
    )
    out = tmp_path / "out"

    with pytest.raises(ArtifactChecksumError) as corrupt:
        await store.download("f1", "data", out / "data.bin")

    assert str(corrupt.value) == (
        f'artifact "data" of flow f1 is corrupt: its SHA-256 is '
        f"{hashlib.sha256(flipped).hexdigest()}, but {uploaded.sha256} was recorded at upload"
    )
    assert list(out.iterdir()) == []

    raw(storage).put_object(Bucket=storage.bucket, Key=store.key("f1", "data"), Body=flipped)
    with pytest.raises(ArtifactChecksumError, match="has no SHA-256 in its metadata"):
        await store.download("f1", "data", out / "data.bin")
    assert list(out.iterdir()) == []


async def test_a_missing_artifact_is_not_found_and_says_where_it_was_looked_for(
    store: S3ArtifactStore, storage: S3Storage, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactNotFound) as missing:
        await store.download("f1", "nope", tmp_path / "nope")

    assert (
        str(missing.value) == f'flow f1 has no artifact "nope" in s3://{storage.bucket}/deploy/prod'
    )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactNotFound):
        await store.info("f1", "nope")


async def test_deleting_a_flows_artifacts_keeps_the_other_flows(
    store: S3ArtifactStore, storage: S3Storage, tmp_path: Path
) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    for flow, name in [("gone", "a"), ("gone", "b"), ("kept", "a"), ("gone-not", "a")]:
        await store.upload(flow, name, source)
    # Another deployment's prefix in the same bucket is not ours to list or delete.
    raw(storage).put_object(Bucket=storage.bucket, Key="deploy/other/gone/a", Body=b"x")

    assert [a.name for a in await store.list("gone")] == ["a", "b"]
    assert await delete_flow_artifacts(None, "gone", s3=storage) == 2

    assert [(a.flow_id, a.name, a.size) for a in await store.list()] == [
        ("gone-not", "a", 1),
        ("kept", "a", 1),
    ]
    assert await store.list("gone") == []
    await store.delete("kept", "a")
    await store.delete("kept", "a")  # already gone: nothing to do
    assert [a.flow_id for a in await store.list()] == ["gone-not"]
    left = raw(storage).list_objects_v2(Bucket=storage.bucket)["Contents"]
    assert sorted(o["Key"] for o in left) == ["deploy/other/gone/a", "deploy/prod/gone-not/a"]


async def test_a_missing_bucket_is_an_error_that_says_what_to_do(
    s3_endpoint: str, tmp_path: Path
) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    absent = S3Storage(bucket="weir-no-such-bucket", endpoint_url=s3_endpoint, **CREDENTIALS)

    with pytest.raises(ArtifactError, match="create the bucket weir-no-such-bucket") as failed:
        await S3ArtifactStore(absent).upload("f1", "x", source)
    assert str(failed.value).startswith(
        'artifact "x" of flow f1: cannot store it in s3://weir-no-such-bucket: NoSuchBucket'
    )
    # Reading too: S3 answers a HEAD with a bare 404 either way; the error says which.
    with pytest.raises(ArtifactError, match="create the bucket weir-no-such-bucket") as reading:
        await S3ArtifactStore(absent).download("f1", "x", tmp_path / "back")
    assert not isinstance(reading.value, ArtifactNotFound)


@pytest.fixture
async def s3_services(settings: Settings, storage: S3Storage) -> AsyncIterator[Services]:
    """The scheduler and a local runner whose artifacts go to S3."""
    running = await Services.start(on_storage(settings, storage))
    yield running
    await running.stop()


async def test_a_flow_on_the_local_executor_hands_outputs_to_inputs_through_s3(
    s3_services: Services, store: S3ArtifactStore, tmp_path: Path
) -> None:
    settings = s3_services.settings
    async with await Client.connect(settings.nats_url) as client:
        flow_id, outcome, view = await finish(client, round_trip_flow())
        assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]
        await assert_round_tripped(store, flow_id, tmp_path)
        names = ["raw", "reversed", "summary", "text", "upper"]
        assert [a.name for a in await store.list(flow_id)] == names
        # Nothing went to the NATS Object Store.
        assert await ArtifactStore(client.js, settings.artifacts_bucket).list(flow_id) == []

    listed = await weir(UNREACHABLE_NATS, "artifacts", "ls", flow_id, env=s3_env(store.storage))
    assert listed.code == 0, listed.stderr
    assert all(name.encode() in listed.stdout for name in names)
    got = await weir(
        settings.nats_url, "artifacts", "get", flow_id, "raw", "-o", "-", env=s3_env(store.storage)
    )
    assert got.code == 0, got.stderr
    assert got.stdout == EVERY_BYTE
    # Without the scheduler there is no recorded digest to check the object against.
    unchecked = await weir(
        UNREACHABLE_NATS, "artifacts", "get", flow_id, "raw", "-o", "-", env=s3_env(store.storage)
    )
    assert unchecked.code == 2 and unchecked.stdout == b""
    assert f'cannot check artifact "raw" of flow {flow_id}' in unchecked.stderr


async def helper(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`python -m weir_runner.artifacts ARGS` as a pod's helper container runs it."""
    proc = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        "weir_runner.artifacts",
        *args,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), HELPER_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_pod_helper_moves_artifacts_through_s3_without_nats(
    store: S3ArtifactStore, storage: S3Storage, tmp_path: Path
) -> None:
    (tmp_path / "f0-raw.bin").write_bytes(EVERY_BYTE)
    env = s3_env(storage)

    code, out = await helper(
        "upload", "--flow", "etl-1", "raw=f0-raw.bin=/data/raw.bin", env=env, cwd=tmp_path
    )
    assert code == 0, out
    code, out = await helper("download", "etl-1/raw=f1-copy.bin", env=env, cwd=tmp_path)
    assert code == 0, out

    assert (tmp_path / "f1-copy.bin").read_bytes() == EVERY_BYTE
    assert (await store.info("etl-1", "raw")).sha256 == hashlib.sha256(EVERY_BYTE).hexdigest()
    code, out = await helper("download", "etl-1/nope=f2.bin", env=env, cwd=tmp_path)
    assert code == 1
    assert f'flow etl-1 has no artifact "nope" in {storage.url}' in out


def test_pod_helpers_get_the_s3_location_and_only_references_to_the_keys() -> None:
    plumbing = ArtifactPlumbing(
        credentials_secret="task-data",
        artifacts_url="s3://weir-data/prod",
        s3_endpoint_url="http://minio:9000",
        s3_region="eu-west-3",
    )
    work = dispatch_of(
        {"name": "load", "image": "etl:1", "cmd": ["run"], "outputs": [{"name": "o", "path": "o"}]}
    )
    spec = pod_manifest(work, "batch", plumbing)["spec"]
    helpers = [spec["initContainers"][0], spec["containers"][0]]

    for container in helpers:
        assert container["env"] == [
            {"name": "WEIR_ARTIFACTS_URL", "value": "s3://weir-data/prod"},
            {"name": "WEIR_S3_ENDPOINT_URL", "value": "http://minio:9000"},
            {"name": "AWS_REGION", "value": "eu-west-3"},
            {
                "name": "AWS_ACCESS_KEY_ID",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": "task-data",
                        "key": "aws-access-key-id",
                        "optional": True,
                    }
                },
            },
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": "task-data",
                        "key": "aws-secret-access-key",
                        "optional": True,
                    }
                },
            },
        ]
        # No NATS in these pods: neither its URL nor its credentials file.
        assert [m["name"] for m in container["volumeMounts"]] == ["weir-data"]
    assert [v["name"] for v in spec["volumes"]] == ["weir-data"]


def test_the_store_is_picked_by_the_settings(storage: S3Storage) -> None:
    assert Settings.from_env({}).artifacts_s3 is None
    on_s3 = Settings.from_env(
        {**s3_env(storage), "AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-3"}
    )
    chosen = on_s3.artifacts_s3

    assert chosen == dataclasses.replace(storage, region="eu-west-3")
    assert isinstance(artifact_store(None, s3=chosen), S3ArtifactStore)
    assert storage.secret_access_key not in repr(on_s3) + repr(chosen)
    assert Settings.from_env({"WEIR_ARTIFACTS_URL": "s3://weir-data"}).artifacts_s3 == S3Storage(
        bucket="weir-data"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WEIR_ARTIFACTS_URL": "https://s3.example.com/bucket"},
            "WEIR_ARTIFACTS_URL='https://s3.example.com/bucket' is not s3://BUCKET/PREFIX",
        ),
        (
            {"WEIR_ARTIFACTS_URL": "s3://Weir_Data/x"},
            "WEIR_ARTIFACTS_URL: 'Weir_Data' is not an S3 bucket name",
        ),
        (
            {"WEIR_ARTIFACTS_URL": "s3://key:secret@weir-data"},
            "WEIR_ARTIFACTS_URL is s3://BUCKET/PREFIX only: no credentials",
        ),
        (
            {"WEIR_ARTIFACTS_URL": "s3://weir-data/a//b"},
            "the prefix 'a//b' has an empty, '.' or '..' part",
        ),
        (
            {"WEIR_ARTIFACTS_URL": "s3://weir-data", "WEIR_S3_ENDPOINT_URL": "minio:9000"},
            "WEIR_S3_ENDPOINT_URL='minio:9000' is not an http:// or https:// URL",
        ),
        (
            {"WEIR_S3_ENDPOINT_URL": "http://minio:9000"},
            "WEIR_S3_ENDPOINT_URL is set, but WEIR_ARTIFACTS_URL is not",
        ),
        (
            {"WEIR_ARTIFACTS_URL": "s3://weir-data", "AWS_ACCESS_KEY_ID": "AKIA"},
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together",
        ),
        (
            {"WEIR_ARTIFACTS_URL": "s3://weir-data", "AWS_SESSION_TOKEN": "t"},
            "AWS_SESSION_TOKEN is set without AWS_ACCESS_KEY_ID",
        ),
    ],
)
def test_bad_s3_settings_are_config_errors_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as bad:
        Settings.from_env(env)
    assert message in str(bad.value)
    with pytest.raises(ConfigError):
        S3Storage.from_env(env)

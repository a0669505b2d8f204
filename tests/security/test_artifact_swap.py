"""An artifact swapped in the store, run against a real scheduler and runner (Postgres, NATS
JetStream). The attacker can write the artifacts bucket, as a task pod's NATS user can: it
replaces another flow's output under the same key with an Object Store `put`, which rewrites
the object's metadata (size, SHA-256) to match the new content, so the store's own check
passes. The digest the event log recorded at upload does not match: the downstream task
fails with `artifact_integrity` before it runs and is not retried, a rerun reusing the output
fails the same way, and `weir artifacts get` refuses the object and leaves no file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from weir.artifacts import ArtifactIntegrityError, ArtifactStore
from weir.client import Client
from weir.config import Settings
from weir.jetstream import close, connect
from weir.s3_storage import S3Storage
from weir_proto.events import TaskSucceeded, event_type
from weir_proto.messages import OutputDigest

from tests.artifacts.helpers import weir
from tests.flows import WAIT, shell, task_views, waits_for
from tests.s3 import s3_endpoint, storage

__all__ = ["s3_endpoint", "storage"]  # fixtures

GENUINE = b"the rows the producer wrote\n"
FORGED = b"rows an attacker put in their place\n"


@pytest.fixture
def exchange() -> Iterator[Path]:
    """A directory the tasks (maybe of another user than the test's) and the test share:
    the signal that releases the gate task, and where the consumer would leave what it read."""
    path = Path(tempfile.mkdtemp(prefix="weir-swap-"))
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def swap_flow(exchange: Path) -> dict[str, object]:
    """`make` writes `data`; `use` reads it, after `gate` waits for the test's signal."""
    signal, seen = exchange / "go", exchange / "seen"
    return {
        "name": "swap-victim",
        "tasks": [
            shell(
                "make",
                f"printf '{GENUINE.decode().strip()}\\n' > d",
                outputs=[{"name": "data", "path": "d"}],
            ),
            shell("gate", waits_for(signal)),
            shell(
                "use",
                f"cp d {seen}",
                depends=["make", "gate"],
                inputs=[{"from": "data", "path": "d"}],
                retry={"max_attempts": 3},
            ),
        ],
    }


async def produced(client: Client, flow_id: str) -> OutputDigest:
    """Wait for `make` to succeed; the digest its event recorded for `data`."""
    async with asyncio.timeout(WAIT):
        async for event in client.events(flow_id, follow=True):
            if isinstance(event, TaskSucceeded) and event.task == "make":
                assert len(event.outputs) == 1
                return event.outputs[0]
    raise AssertionError("make never succeeded")


async def replace_in_bucket(settings: Settings, flow_id: str) -> None:
    """The attack: put other bytes under the same key; the Object Store writes their size
    and digest into the object's metadata, as it would for a genuine upload."""
    nc = await connect(settings.nats_url, "attacker")
    try:
        objects = await nc.jetstream().object_store(settings.artifacts_bucket)
        await objects.put(f"{flow_id}/data", FORGED)
    finally:
        await close(nc)


async def test_a_swapped_artifact_is_refused_downstream_on_rerun_and_by_the_cli(
    client: Client, settings: Settings, exchange: Path, tmp_path: Path
) -> None:
    flow_id = await client.submit(swap_flow(exchange))
    recorded = await produced(client, flow_id)
    assert (recorded.size, recorded.sha256) == (len(GENUINE), hashlib.sha256(GENUINE).hexdigest())

    await replace_in_bucket(settings, flow_id)
    # The store's own check is fooled: its metadata describes the forged bytes.
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    unchecked = tmp_path / "unchecked"
    await store.download(flow_id, "data", unchecked)
    assert unchecked.read_bytes() == FORGED

    (exchange / "go").touch()
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_failed"
    use = (await task_views(client, flow_id))["use"]
    assert (use.status, use.error_type, use.attempt) == ("failed", "artifact_integrity", 1)
    forged = hashlib.sha256(FORGED).hexdigest()
    message = use.error_message or ""
    assert f'artifact "data" of flow {flow_id} is not the one its task uploaded' in message
    assert recorded.sha256 in message and forged in message
    assert not (exchange / "seen").exists()  # the task never ran on the forged data

    # A rerun reusing `make` carries its recorded digest over and refuses the object too.
    rerun = (await client.rerun(flow_id, failed_only=True)).flow_id
    assert event_type(await asyncio.wait_for(client.wait(rerun), WAIT)) == "flow_failed"
    tasks = {t.name: t for t in (await client.get(rerun)).tasks}
    assert tasks["make"].outputs == [recorded]
    assert tasks["use"].error_type == "artifact_integrity"
    assert not (exchange / "seen").exists()

    target = tmp_path / "got" / "data"
    got = await weir(settings.nats_url, "artifacts", "get", flow_id, "data", "-o", str(target))
    assert got.code == 1
    assert "is not the one its task uploaded" in got.stderr
    assert recorded.sha256 in got.stderr and forged in got.stderr
    assert "Traceback" not in got.stderr
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    piped = await weir(settings.nats_url, "artifacts", "get", flow_id, "data", "-o", "-")
    assert piped.code == 1 and piped.stdout == b""

    listed = await weir(settings.nats_url, "artifacts", "ls", flow_id, "--json")
    assert listed.code == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["matches_log"] is False and row["recorded"]["sha256"] == recorded.sha256


async def test_a_swapped_object_in_s3_is_refused_against_the_recorded_digest(
    storage: S3Storage, tmp_path: Path
) -> None:
    from weir.artifacts_s3 import DIGEST_METADATA, S3ArtifactStore, _client

    source = tmp_path / "data"
    source.write_bytes(GENUINE)
    s3 = S3ArtifactStore(storage)
    stored = await s3.upload("f1", "data", source)
    recorded = OutputDigest(name="data", size=stored.size, sha256=stored.sha256)
    # The attacker writes the key with a matching `sha256` metadata of its own.
    _client(storage).put_object(
        Bucket=storage.bucket,
        Key=s3.key("f1", "data"),
        Body=FORGED,
        Metadata={DIGEST_METADATA: hashlib.sha256(FORGED).hexdigest()},
    )
    fooled = tmp_path / "fooled"
    await s3.download("f1", "data", fooled)
    assert fooled.read_bytes() == FORGED

    target = tmp_path / "out" / "data"
    with pytest.raises(ArtifactIntegrityError, match="is not the one its task uploaded"):
        await s3.download("f1", "data", target, recorded)
    assert not target.parent.exists() or os.listdir(target.parent) == []

    # Bytes of the same size under the genuine digest: only the bytes themselves tell.
    same_size = bytes(reversed(GENUINE))
    _client(storage).put_object(
        Bucket=storage.bucket,
        Key=s3.key("f1", "data"),
        Body=same_size,
        Metadata={DIGEST_METADATA: recorded.sha256},
    )
    with pytest.raises(ArtifactIntegrityError, match=hashlib.sha256(same_size).hexdigest()):
        await s3.download("f1", "data", target, recorded)
    assert os.listdir(target.parent) == []

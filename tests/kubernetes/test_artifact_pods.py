"""Pods of tasks with inputs and outputs: an init container downloads the inputs, the task
runs, then a container uploads the outputs; the attempt succeeds only when all did."""

from __future__ import annotations

from typing import Any

import msgspec
from weir_proto.messages import ErrorType, OutputDigest
from weir_runner.artifacts import INTEGRITY_EXIT_CODE, digest_lines, read_digest_lines
from weir_runner.executors.kubernetes.manifest import ArtifactPlumbing, pod_manifest
from weir_runner.executors.kubernetes.verdict import Finished, Running, judge

from tests.flows import dispatch_of

PLUMBING = ArtifactPlumbing(helper_image="weir:9", bucket="b", credentials_secret="task-nats")


def manifest(input_flows: dict[str, str] | None = None, **task: Any) -> dict[str, Any]:
    fields = {"name": "load", "image": "etl:1", "cmd": ["run"], **task}
    work = dispatch_of(fields, "etl-7", input_flows=input_flows)
    return pod_manifest(work, "batch", PLUMBING)


def test_each_input_is_downloaded_into_a_file_mounted_at_exactly_its_path() -> None:
    pod = manifest(
        inputs=[{"from": "raw", "path": "in/raw.csv"}, {"from": "model", "path": "/models/m.bin"}],
        input_flows={"model": "etl-6"},
    )
    spec = pod["spec"]
    [download] = spec["initContainers"]
    [task] = spec["containers"]

    assert download["image"] == "weir:9"
    assert download["command"] == [
        "python",
        "-m",
        "weir_runner.artifacts",
        "download",
        "etl-7/raw=f0-raw.csv",
        "etl-6/model=f1-m.bin",
    ]
    assert task["name"] == "task" and task["workingDir"] == "/work"
    # One file per path, nothing of the image's directories hidden.
    assert task["volumeMounts"] == [
        {"name": "weir-data", "mountPath": "/work/in/raw.csv", "subPath": "f0-raw.csv"},
        {"name": "weir-data", "mountPath": "/models/m.bin", "subPath": "f1-m.bin"},
    ]
    env = {e["name"]: e for e in download["env"]}
    assert env["WEIR_NATS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "task-nats", "key": "url"}
    assert env["WEIR_ARTIFACTS_BUCKET"]["value"] == "b"
    # The task pods' NATS user, when the Secret has one (else a `creds` file, or none).
    for variable, key in (("WEIR_NATS_USER", "user"), ("WEIR_NATS_PASSWORD", "password")):
        ref = {"name": "task-nats", "key": key, "optional": True}
        assert env[variable] == {"name": variable, "valueFrom": {"secretKeyRef": ref}}
    assert "env" not in task or all(not e["name"].startswith("WEIR_NATS") for e in task["env"])


def test_outputs_get_a_placeholder_file_and_are_uploaded_after_the_task() -> None:
    pod = manifest(
        inputs=[{"from": "raw", "path": "/data.csv"}],
        outputs=[
            {"name": "report", "path": "/report.json"},
            {"name": "cleaned", "path": "/data.csv"},  # rewritten in place
        ],
    )
    spec = pod["spec"]

    prepare, task = spec["initContainers"]
    assert prepare["name"] == "weir-inputs" and task["name"] == "task"
    # The input's file is not replaced by an empty placeholder.
    assert prepare["command"][3:] == [
        "download",
        "--create",
        "f1-report.json",
        "etl-7/raw=f0-data.csv",
    ]
    [upload] = spec["containers"]
    assert upload["name"] == "weir-outputs"
    assert upload["command"][3:] == [
        "upload",
        "--flow",
        "etl-7",
        "report=f1-report.json=/report.json",
        "cleaned=f0-data.csv=/data.csv",
    ]
    assert "workingDir" not in task  # absolute paths only


def _pod(statuses: dict[str, dict[str, Any]], phase: str = "Running") -> dict[str, Any]:
    pod = manifest(
        inputs=[{"from": "raw", "path": "in.csv"}], outputs=[{"name": "out", "path": "o"}]
    )
    init = [{"name": n, "state": statuses[n]} for n in ("weir-inputs", "task") if n in statuses]
    main = [{"name": "weir-outputs", "state": statuses.get("weir-outputs", {"waiting": {}})}]
    pod["status"] = {"phase": phase, "initContainerStatuses": init, "containerStatuses": main}
    return pod


def test_attempt_succeeds_only_once_the_outputs_are_stored() -> None:
    done = {"terminated": {"exitCode": 0}}
    uploading = _pod({"weir-inputs": done, "task": done, "weir-outputs": {"running": {}}})
    assert isinstance(judge(uploading, "load"), Running)
    stored = _pod({"weir-inputs": done, "task": done, "weir-outputs": done}, "Succeeded")
    assert judge(stored, "load") == Finished(0, None, "")


def test_failed_download_or_upload_fails_the_attempt_with_the_helpers_message() -> None:
    done = {"terminated": {"exitCode": 0}}
    broken = {"terminated": {"exitCode": 1, "message": 'flow etl-7 has no artifact "raw"'}}
    no_input = judge(_pod({"weir-inputs": broken}, "Failed"), "load")
    assert isinstance(no_input, Finished) and no_input.error_type is ErrorType.EXECUTOR
    assert "its inputs could not be downloaded" in no_input.message
    assert 'has no artifact "raw"' in no_input.message
    no_upload = judge(_pod({"weir-inputs": done, "task": done, "weir-outputs": broken}), "load")
    assert isinstance(no_upload, Finished) and no_upload.error_type is ErrorType.EXECUTOR
    assert "its outputs could not be stored" in no_upload.message


def test_task_failing_in_its_init_container_reports_its_exit_code() -> None:
    done = {"terminated": {"exitCode": 0}}
    failed = judge(_pod({"weir-inputs": done, "task": {"terminated": {"exitCode": 3}}}), "load")
    assert isinstance(failed, Finished)
    assert failed.exit_code == 3 and failed.error_type is ErrorType.EXIT_CODE


def test_volume_file_names_are_plain_whatever_the_path() -> None:
    pod = manifest(outputs=[{"name": "x", "path": "/out/a=b c.txt"}])
    [upload] = pod["spec"]["containers"]
    # NAME=FILE=AS_DECLARED: the file name has no `=`, so the declared path may.
    assert upload["command"][-1] == "x=f0-a_b_c.txt=/out/a=b c.txt"
    [task] = pod["spec"]["initContainers"][1:]
    assert task["volumeMounts"][0]["subPath"] == "f0-a_b_c.txt"


DIGEST = OutputDigest(name="raw", size=12, sha256="ab" * 32)


def test_inputs_are_downloaded_against_the_digests_in_the_dispatch() -> None:
    work = dispatch_of(
        {
            "name": "load",
            "image": "etl:1",
            "cmd": ["run"],
            "inputs": [{"from": "raw", "path": "r"}],
        },
        "etl-7",
        input_flows={"raw": "etl-6"},
    )
    work = msgspec.structs.replace(work, input_digests=[DIGEST])
    [download] = pod_manifest(work, "batch", PLUMBING)["spec"]["initContainers"]
    assert download["command"][3:] == [
        "download",
        f"--expect=etl-6/raw=12:{'ab' * 32}",
        "etl-6/raw=f0-r",
    ]


def test_a_refused_input_is_an_integrity_failure_and_the_upload_reports_digests() -> None:
    refused = {
        "terminated": {"exitCode": INTEGRITY_EXIT_CODE, "message": "is not the one its task"}
    }
    verdict = judge(_pod({"weir-inputs": refused}, "Failed"), "load")
    assert isinstance(verdict, Finished) and verdict.error_type is ErrorType.ARTIFACT_INTEGRITY
    assert "an input was refused" in verdict.message

    done = {"terminated": {"exitCode": 0}}
    uploaded = {"terminated": {"exitCode": 0, "message": digest_lines([DIGEST])}}
    stored = judge(_pod({"weir-inputs": done, "task": done, "weir-outputs": uploaded}), "load")
    assert stored == Finished(0, None, "", outputs=(DIGEST,))


def test_digests_beyond_the_termination_message_limit_are_left_out_whole() -> None:
    many = [OutputDigest(name=f"out-{n}", size=n, sha256=f"{n:064x}") for n in range(100)]
    text = digest_lines(many)
    assert len(text.encode()) <= 4096
    kept = read_digest_lines(text)
    assert 30 < len(kept) < 100 and list(kept) == many[: len(kept)]
    assert read_digest_lines(text[:-10]) == kept[:-1]  # a line cut short is skipped

"""`python -m weir_web.probe`, the readiness probe of the weir-web container, run as the
container runs it (a process with the container's environment) against a real weir-web."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from weir.embedded import free_port

from tests.web.conftest import Web, write_tokens

PROBE_TIMEOUT = 60.0


async def run_probe(**env: str) -> tuple[int, str]:
    # A subprocess of its own loop: weir-web serves from this test's event loop meanwhile.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "weir_web.probe",
        env={**os.environ, "WEIR_WEB_TOKENS": "", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(PROBE_TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


async def test_probe_passes_when_weir_web_reports_the_scheduler_healthy(
    web: Web, tmp_path: Path
) -> None:
    tokens = write_tokens(tmp_path / "tokens")
    # As in the pod: listening on every address, probed on loopback.
    code, output = await run_probe(
        WEIR_WEB_LISTEN=f"0.0.0.0:{web.web.port}", WEIR_WEB_TOKENS=str(tokens)
    )
    assert (code, output) == (0, "")


async def test_probe_fails_with_one_line_when_weir_web_refuses_or_is_absent(
    web: Web, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    stranger.write_text("# not weir-web's\nnot-a-token-weir-web-knows viewer\n")
    code, output = await run_probe(
        WEIR_WEB_LISTEN=f"0.0.0.0:{web.web.port}", WEIR_WEB_TOKENS=str(stranger)
    )
    assert code == 1
    assert output == (
        f"weir-web is not ready: http://127.0.0.1:{web.web.port}/api/v1/health answered 401: "
        "the bearer token is not valid\n"
    )

    code, output = await run_probe(WEIR_WEB_LISTEN=f"127.0.0.1:{free_port()}")
    assert code == 1 and "did not answer" in output and "Traceback" not in output

    empty = tmp_path / "empty"
    empty.write_text("# no token yet\n")
    code, output = await run_probe(WEIR_WEB_TOKENS=str(empty))
    assert (code, output) == (
        1,
        f"weir-web is not ready: WEIR_WEB_TOKENS={str(empty)!r} lists no token\n",
    )


async def test_liveness_path_of_the_manifest_answers_without_a_token(web: Web) -> None:
    from tests.kubernetes.test_deploy import pod_spec

    [container] = pod_spec("Deployment", "weir-web")["containers"]
    path = container["livenessProbe"]["httpGet"]["path"]
    async with web.client() as anonymous:
        assert (await anonymous.get(f"{web.url}{path}")).status_code == 200
        assert (await anonymous.get(f"{web.url}/api/v1/health")).status_code == 401

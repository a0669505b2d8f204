"""`python -m weir_web.probe`: whether the weir-web of this container is ready, for container
probes (a Kubernetes exec probe, a compose healthcheck).

It asks `GET /api/v1/health` on loopback, at the port of WEIR_WEB_LISTEN, with the first token
of WEIR_WEB_TOKENS (the endpoint wants a viewer, and a token must not be written into a
manifest). Exit 0 when weir-web answers 200 (the scheduler answers weir-web over NATS); else
one line saying why, and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

from weir.config import ConfigError, Settings
from weir.setting import read_one

from weir_web.config import read_tokens_file

PROBE_TIMEOUT = 3.0
"""Seconds to wait for the answer (weir-web asks each service with a shorter timeout)."""
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""A wildcard listen address, and the loopback address it includes."""


def first_token(text: str) -> str | None:
    """The first `TOKEN ROLE` line's token (the format of weir_web.config.parse_tokens)."""
    for raw in text.splitlines():
        parts = raw.split("#", 1)[0].split()
        if len(parts) == 2:
            return parts[0]
    return None


def health_request(env: dict[str, str]) -> urllib.request.Request:
    """The request this container's weir-web must answer with 200 (ConfigError: it cannot be
    made from `env`)."""
    host, port = read_one(Settings, "web_listen", env)
    host = ANY_ADDRESS.get(host, host)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = urllib.request.Request(f"http://{authority}/api/v1/health")
    path = read_one(Settings, "web_tokens", env)
    if path:
        token = first_token(read_tokens_file(path))
        if token is None:
            raise ConfigError(f"WEIR_WEB_TOKENS={path!r} lists no token")
        request.add_header("Authorization", f"Bearer {token}")
    return request


def probe(env: dict[str, str]) -> str | None:
    """None if weir-web is ready, else why not."""
    try:
        request = health_request(env)
    except ConfigError as exc:
        return str(exc)
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return None
    except urllib.error.HTTPError as exc:
        return f"{request.full_url} answered {exc.code}: {_summary(exc.read())}"
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return f"{request.full_url} did not answer: {reason}"


def _summary(body: bytes) -> str:
    """`degraded (scheduler: unreachable)` from a health report, or an error's message."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    if not isinstance(answer, dict):
        return str(answer)[:200]
    if "error" in answer:
        return str(answer["error"].get("message", answer["error"]))
    services = answer.get("services", {})
    states = ", ".join(
        f"{name}: {report.get('status') if isinstance(report, dict) else report}"
        for name, report in services.items()
    )
    return f"{answer.get('status')} ({states})"


def main() -> None:
    problem = probe(dict(os.environ))
    if problem is not None:
        print(f"weir-web is not ready: {problem}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

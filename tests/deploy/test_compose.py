"""docker-compose.yml: the stack is complete, wired together, and every file it uses exists."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.files import DEPLOY, DOCKERFILE, ROOT, compose, image_steps, load_yaml, tool
from tests.deploy.test_dockerfiles import ignored

SERVICES = {
    "postgres",
    "nats",
    "scheduler",
    "runner",
    "web",
    "otel-collector",
    "tempo",
    "prometheus",
    "grafana",
}


def test_compose_has_the_whole_stack() -> None:
    assert set(compose()["services"]) == SERVICES


def test_every_built_service_has_its_dockerfile_and_context() -> None:
    built = {name: s["build"] for name, s in compose()["services"].items() if "build" in s}
    assert set(built) == {"scheduler", "runner", "web"}
    for name, build in built.items():
        context = (ROOT / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, f"{name}: one Dockerfile"
        assert build["target"] == name, f"{name}: builds target {build['target']}"


def test_every_bind_mounted_file_exists() -> None:
    mounts = [
        (name, volume.split(":")[0])
        for name, service in compose()["services"].items()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    assert mounts, "the observability services mount their configuration"
    for name, source in mounts:
        assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_named_volumes_and_dependencies_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        for config in service.get("configs", []):
            assert config["source"] in compose()["configs"], f"{name}: config {config['source']}"


def test_images_are_pinned_and_ports_stay_on_localhost() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        if "build" not in service:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image!r}"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_services_run_the_entrypoints_of_the_pyproject() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for service, script in (
        ("scheduler", "weir-scheduler"),
        ("runner", "weir-runner"),
        ("web", "weir-web"),
    ):
        assert script in scripts
        target = compose()["services"][service]["build"]["target"]
        assert ("ENTRYPOINT", f'["{script}"]') in image_steps(target)


def test_weir_services_export_to_the_collector_it_listens_on() -> None:
    collector = load_yaml(DEPLOY / "otel/collector.yaml")
    http_port = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    for name in ("scheduler", "runner", "web"):
        env = compose()["services"][name]["environment"]
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.hostname, str(endpoint.port)) == ("otel-collector", http_port)
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"] == f"weir-{name}"
        assert env["WEIR_NATS_URL"] == "nats://nats:4222"
    assert compose()["services"]["runner"]["environment"]["WEIR_EXECUTOR"] == "local"
    database = urlsplit(compose()["services"]["scheduler"]["environment"]["WEIR_DATABASE_URL"])
    postgres = compose()["services"]["postgres"]["environment"]
    assert (database.hostname, database.username) == ("postgres", postgres["POSTGRES_USER"])
    assert database.path == f"/{postgres['POSTGRES_DB']}"


def test_nats_config_enables_jetstream_with_8mb_payloads(tmp_path: Path) -> None:
    content = compose()["configs"]["nats-conf"]["content"]
    assert "max_payload: 8MB" in content
    assert "jetstream" in content
    conf = tmp_path / "nats.conf"
    conf.write_text(content)
    check = subprocess.run(
        [tool("nats-server"), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=10
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_web_listens_beyond_loopback_with_the_tokens_and_session_key_of_its_secrets(
    tmp_path: Path,
) -> None:
    from weir.config import ConfigError
    from weir_web.config import WebSettings

    from tests.web.conftest import SESSION_KEY, write_session_key, write_tokens

    web = compose()["services"]["web"]
    env = web["environment"]
    assert set(web["secrets"]) == {"web-tokens", "web-session-key"}
    assert env["WEIR_WEB_TOKENS"] == "/run/secrets/web-tokens"
    assert env["WEIR_WEB_SESSION_KEY_FILE"] == "/run/secrets/web-session-key"
    gitignored = (ROOT / ".gitignore").read_text().split()
    for secret in web["secrets"]:
        # The operator's own tokens and key: never committed, never sent to the Docker daemon.
        secret_file = compose()["secrets"][secret]["file"]
        assert ignored(secret_file)
        assert any(secret_file.startswith(pattern) for pattern in gitignored), secret_file
    # weir-web starts with this environment and both files, and refuses to without them.
    listen = env["WEIR_WEB_LISTEN"]
    tokens = str(write_tokens(tmp_path / "tokens"))
    key = str(write_session_key(tmp_path / "key"))
    started = WebSettings.from_env(
        {"WEIR_WEB_LISTEN": listen, "WEIR_WEB_TOKENS": tokens, "WEIR_WEB_SESSION_KEY_FILE": key}
    )
    assert started.tokens and started.session_key == SESSION_KEY
    with pytest.raises(ConfigError, match="WEIR_WEB_TOKENS is not set"):
        WebSettings.from_env({"WEIR_WEB_LISTEN": listen})
    with pytest.raises(ConfigError, match="WEIR_WEB_SESSION_KEY_FILE is not set"):
        WebSettings.from_env({"WEIR_WEB_LISTEN": listen, "WEIR_WEB_TOKENS": tokens})
    port = listen.rsplit(":", 1)[1]
    assert web["ports"] == [f"127.0.0.1:{port}:{port}"]
    # tests/web/test_probe.py runs the healthcheck's command against a real weir-web.
    assert web["healthcheck"]["test"] == ["CMD", "python", "-m", "weir_web.probe"]
    assert set(web["depends_on"]) >= {"nats", "scheduler"}

"""Every setting is declared once (variable, default, parser, doc line) and documented as
declared: the README's configuration table and the docs' tables agree with `Settings`."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from weir.config import ConfigError, Settings
from weir.setting import Setting, declared, default_of

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {s.env: (item, s) for item, s in declared(Settings)}
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|")


def _configuration_table() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("## Configuration")
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return table


def test_every_field_but_the_aws_ones_is_declared_with_its_variable() -> None:
    undeclared = {f.name for f in dataclasses.fields(Settings)} - {
        item.name for item, _ in DECLARED.values()
    }
    assert undeclared == {
        "s3_region",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
    assert all(env.startswith("WEIR_") for env in DECLARED)


@pytest.mark.parametrize("env", sorted(DECLARED))
def test_the_shown_default_is_what_an_unset_variable_means(env: str) -> None:
    item, setting = DECLARED[env]
    literal = re.fullmatch(r"`([^`]*)`", setting.shown)
    if literal is not None:
        assert setting.parse(env, literal.group(1)) == default_of(item)
    assert getattr(Settings.from_env({}), item.name) == default_of(item)


def test_the_readme_table_documents_every_setting_as_declared() -> None:
    table = _configuration_table()
    missing = [s.row() for _, s in DECLARED.values() if s.row() not in table]
    assert missing == [], "README.md's configuration table differs from weir.config.Settings"
    for line in table[2:]:
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0]):
            assert name in DECLARED or name.startswith("AWS_"), (
                f"README documents {name}, which `Settings` does not declare"
            )


def test_the_docs_tables_show_the_declared_defaults() -> None:
    checked = 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        for line in page.read_text().splitlines():
            match = ROW.match(line)
            if match and match.group(1) in DECLARED:
                setting: Setting = DECLARED[match.group(1)][1]
                assert match.group(2) == setting.shown, f"{page.name}: {line}"
                checked += 1
    assert checked >= 10


def test_an_empty_variable_means_the_default_and_a_bad_one_names_itself() -> None:
    assert Settings.from_env({"WEIR_EXECUTOR": "", "WEIR_NATS_URL": " "}) == Settings.from_env({})
    with pytest.raises(ConfigError, match="WEIR_COMMANDS_MAX_BYTES='off' is not a size"):
        Settings.from_env({"WEIR_COMMANDS_MAX_BYTES": "off"})
    assert Settings.from_env({"WEIR_KUBECONFIG": "", "KUBECONFIG": "/k"}).kube_config == "/k"


@pytest.mark.parametrize(
    ("env", "value", "says"),
    [
        ("WEIR_DATABASE_URL", "notaurl", "is not a Postgres URL (no scheme)"),
        ("WEIR_DATABASE_URL", "mysql://u:pw-9f3@h/db", "is not a Postgres URL (scheme 'mysql')"),
        ("WEIR_DATABASE_URL", "postgresql://u:pw-9f3@[h/db", "is not a URL: it has brackets"),
        ("WEIR_DATABASE_URL", "postgresql://u:pw-9f3@h:5x/db", "is not a URL: its port is not"),
        # a password holding / or [..] that is not percent-encoded: urllib's own messages
        # would quote a part of it
        ("WEIR_DATABASE_URL", "postgresql://weir:pw-9f3/Ab+c==@db:5432/w", "is not a URL: its"),
        ("WEIR_DATABASE_URL", "postgresql://weir:p[pw-9f3]s@db/w", "is not a URL: it has"),
        ("WEIR_NATS_URL", "nats://a:4222,http://b", "has a server that is not a NATS URL"),
        ("WEIR_NATS_URL", "nats://a:4222,", "has a server that is not a NATS URL"),
        ("WEIR_NATS_URL", "nats://[a", "has a server that is not a URL: it has brackets"),
        ("WEIR_NATS_URL", "nats://u:[pw-9f3]@n2:4222", "has a server that is not a URL: it"),
    ],
)
def test_a_bad_url_is_refused_at_start_without_repeating_it(
    env: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({env: value})
    assert str(raised.value).startswith(f"{env} {says}")
    assert "pw-9f3" not in str(raised.value), "a password in the URL was repeated"


def test_good_urls_are_kept_as_given() -> None:
    urls = {
        "WEIR_DATABASE_URL": "postgres://u:p@db.example:5433/weir?sslmode=require",
        "WEIR_NATS_URL": "nats://a:4222, tls://b:4223,c:4224",
    }
    got = Settings.from_env(urls)
    assert (got.database_url, got.nats_url) == tuple(urls.values())


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"WEIR_NATS_URL": "http://x", "WEIR_DATABASE_URL": "y", "WEIR_EXECUTOR": "z"}
        )
    assert [line.split()[0].split("=")[0] for line in str(raised.value).splitlines()] == [
        "WEIR_NATS_URL",
        "WEIR_DATABASE_URL",
        "WEIR_EXECUTOR",
    ]

"""The bodies of the HTTP API that are its own (the rest are the proto's messages): what the
endpoints decode from requests and encode into answers. The OpenAPI document's schemas of
them are rendered from these same types (`weir_web.openapi`), so the two cannot differ."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast, get_args

import msgspec
from msgspec import UNSET, UnsetType

from weir_web.config import Role

RoleName = Literal["viewer", "operator", "admin"]
assert set(get_args(RoleName)) == set(Role.__members__), "RoleName names every Role"


def role_name(role: Role) -> RoleName:
    return cast(RoleName, role.name)


class Login(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /session`: a token of the tokens file, exchanged for a session cookie."""

    token: str


class Session(msgspec.Struct):
    """A session's role and the CSRF secret its cookie-carried writes send as
    `X-CSRF-Token`."""

    role: RoleName
    csrf: str


class Cancel(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = "cancelled from the HTTP API"


class Rerun(msgspec.Struct, forbid_unknown_fields=True):
    failed_only: bool = False
    """Run again only the tasks that did not succeed (and what depends on them)."""


class Retry(msgspec.Struct, forbid_unknown_fields=True):
    task: str
    downstream: bool = False
    """Also run again every task that depends on `task`."""


class Pause(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = "paused from the HTTP API"


class Resume(msgspec.Struct, forbid_unknown_fields=True):
    pass


class SecretValue(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /secrets/{name}`: the value, sealed by weir-web before the scheduler stores it;
    never answered or logged."""

    value: str


class Artifact(msgspec.Struct):
    """An artifact of a flow: output `name`, its size and SHA-256 (hex) as recorded at
    upload."""

    name: str
    size: int
    sha256: str
    modified: datetime | None


class Health(msgspec.Struct):
    """`ok` when the scheduler answered healthy (200), else `degraded` (503); each service's
    own `weir.health` report, or `{"status": "unreachable"}`."""

    status: Literal["ok", "degraded"]
    services: dict[str, dict[str, Any]]


class FlowChange(msgspec.Struct, omit_defaults=True):
    """The data of `GET /flows`' live feed: `{}` for `ready` and `resync`; for `change`, the
    flow that may have changed status and the type of the event that did."""

    flow_id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET


REQUEST_BODIES: tuple[type[msgspec.Struct], ...] = (
    Login,
    Cancel,
    Rerun,
    Retry,
    Pause,
    Resume,
    SecretValue,
)
RESPONSE_BODIES: tuple[type[msgspec.Struct], ...] = (Session, Artifact, Health, FlowChange)

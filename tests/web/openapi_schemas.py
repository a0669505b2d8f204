"""Checking bodies against the schemas the OpenAPI document states, every `$ref` resolved
within the document as an OpenAPI tool resolves it."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
from referencing import Registry
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:weir:openapi"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def document_validator(document: dict[str, Any], pointer: str) -> jsonschema.Draft202012Validator:
    """A validator of the schema at JSON pointer `pointer` of `document`."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(document)
    )
    return jsonschema.Draft202012Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry)


def response_validator(
    document: dict[str, Any],
    path: str,
    method: str,
    status: int,
    media: str = "application/json",
) -> jsonschema.Draft202012Validator:
    """A validator of the body the document states for `status` of `method` on `path`."""
    response = document["paths"][path][method]["responses"][str(status)]
    at = f"/paths/{_escape(path)}/{method}/responses/{status}"
    if "$ref" in response:
        at = response["$ref"].removeprefix("#")
        response = document["components"]["responses"][at.rsplit("/", 1)[1]]
    assert media in response["content"], (path, method, status, media)
    return document_validator(document, f"{at}/content/{_escape(media)}/schema")


def schema_validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of the component schema `name`."""
    return document_validator(document, f"/components/schemas/{_escape(name)}")


def problems(validator: jsonschema.Draft202012Validator, body: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]

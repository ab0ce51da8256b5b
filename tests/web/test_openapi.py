"""`/api/v1/openapi.json` describes every route the app serves, and only those."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.web.conftest import Client

# aiohttp's route templates as OpenAPI writes them: `{tail:regex}` → `{tail}`.
_TEMPLATE_VARIABLE = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(path template, lower-case method) for every route of `app` and its sub-apps."""
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        info: dict[str, Any] = dict(resource.get_info())
        subapp = info.get("app")
        if isinstance(subapp, web.Application):
            continue  # its routes are listed below, with the prefix
        template = _TEMPLATE_VARIABLE.sub(r"{\1}", resource.canonical)
        found.add((template, route.method.lower()))
    for resource in app.router.resources():
        subapp = resource.get_info().get("app")
        if isinstance(subapp, web.Application):
            found |= served_operations(subapp)
    return found


def described_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """Operations, and the WebDAV methods OpenAPI 3.1 cannot name (`x-webdav-methods`)."""
    found = set()
    for path, item in document["paths"].items():
        for key in item:
            if key in {"get", "head", "put", "post", "delete", "patch", "options", "trace"}:
                found.add((path, key))
        found |= {(path, method.lower()) for method in item.get("x-webdav-methods", {})}
    return found


async def test_every_route_is_described_and_every_description_served(client: Client) -> None:
    answer = await client.get("/api/v1/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    document = await answer.json()
    assert document["openapi"].startswith("3.1")
    assert served_operations(client.app) == described_operations(document)


async def test_operation_ids_are_unique(client: Client) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for key, op in item.items()
        if not key.startswith("x-")
    ]
    assert len(ids) == len(set(ids))

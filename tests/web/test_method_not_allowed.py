"""`/files/...` takes the methods its kind of URL supports; any other answers 405 with an
`Allow` naming them (SPEC "Operations"): a file URL GET, HEAD and PUT, a directory URL
(ending in '/') GET, HEAD and POST (the upload form); both take DELETE and WebDAV's class 1
methods."""

from __future__ import annotations

import pytest
from aiohttp import FormData

from tests.web.conftest import Client

DAV = {"OPTIONS", "PROPFIND", "MKCOL", "COPY", "MOVE", "DELETE"}
FILE = {"GET", "HEAD", "PUT"} | DAV
DIRECTORY = {"GET", "HEAD", "POST"} | DAV


def form() -> FormData:
    data = FormData()
    data.add_field("file", b"x", filename="x.txt")
    return data


@pytest.mark.parametrize(
    ("method", "target", "allowed"),
    [
        ("POST", "/files/data.bin", FILE),
        ("POST", "/files/nothing/here.txt", FILE),
        ("PATCH", "/files/data.bin", FILE),
        ("LOCK", "/files/docs/readme.txt", FILE),  # WebDAV class 2: not offered
        ("PUT", "/files/docs/", DIRECTORY),
        ("PUT", "/files/docs/.", DIRECTORY),
        ("PATCH", "/files/docs/", DIRECTORY),
    ],
)
async def test_a_method_the_url_does_not_take_is_405_with_allow(
    client: Client, method: str, target: str, allowed: set[str]
) -> None:
    response = await client.request(method, target, data=form())
    assert response.status == 405, await response.text()
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
    assert await response.json() == {"error": "method not allowed", "status": 405}
    assert await (await client.get("/files/data.bin")).read()  # still there
    assert (await client.get("/files/data.bin/x.txt")).status == 404
    assert (await client.get("/files/nothing/here.txt/x.txt")).status == 404


async def test_the_methods_a_url_takes_still_reach_their_handlers(client: Client) -> None:
    assert (await client.put("/files/new.txt", data=b"x")).status == 201
    posted = await client.post("/files/docs/", data=form(), headers={"Accept": "application/json"})
    assert posted.status == 201
    assert (await client.delete("/files/new.txt")).status == 204
    assert (await client.head("/files/docs/")).status == 200

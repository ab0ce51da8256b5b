"""WebDAV class 1 on `/files/` (RFC 4918), in-process: every status of OPTIONS, PROPFIND,
MKCOL, COPY and MOVE, the hardened PROPFIND parser, and the access rules for each method."""

from __future__ import annotations

import asyncio
import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from artifactd.settings import Settings
from artifactd.store.base import Store
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from artifactd.web.dav.properties import MAX_BODY_BYTES
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.conftest import DATA, Auth, Client, ClientFactory, store_bytes

D = "{DAV:}"
MakeClient = Callable[..., Awaitable[Client]]

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol9;</D:displayname></D:prop></D:propfind>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&xxe;</D:displayname></D:prop></D:propfind>
"""
PROP_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:X="urn:example"><D:prop>
  <D:getetag/><D:resourcetype/><X:colour/>
</D:prop></D:propfind>"""


def by_href(body: str) -> dict[str, ET.Element]:
    root = ET.fromstring(body)  # the server's own answer (the request side is defusedxml's)
    assert root.tag == f"{D}multistatus"
    return {r.findtext(f"{D}href") or "": r for r in root.findall(f"{D}response")}


def props(response: ET.Element, status: str = "200 OK") -> dict[str, ET.Element]:
    for propstat in response.findall(f"{D}propstat"):
        if propstat.findtext(f"{D}status") == f"HTTP/1.1 {status}":
            prop = propstat.find(f"{D}prop")
            assert prop is not None
            return {child.tag: child for child in prop}
    return {}


def is_collection(response: ET.Element) -> bool:
    resourcetype = props(response)[f"{D}resourcetype"]
    return resourcetype.find(f"{D}collection") is not None


async def propfind(
    client: Client,
    path: str,
    depth: str | None = "1",
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> Any:
    sent = {**(headers or {}), **({} if depth is None else {"Depth": depth})}
    return await client.request("PROPFIND", path, headers=sent, **kw)


# -- OPTIONS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed", "refused"),
    [
        ("/files/data.bin", {"GET", "PUT", "DELETE", "PROPFIND", "COPY", "MOVE"}, {"MKCOL"}),
        ("/files/docs/", {"GET", "PROPFIND", "COPY", "MOVE", "DELETE"}, {"MKCOL", "PUT"}),
        ("/files/docs", {"GET", "PROPFIND", "COPY", "MOVE", "DELETE"}, {"MKCOL", "PUT"}),
        ("/files/missing", {"PUT", "MKCOL"}, {"GET", "DELETE", "MOVE"}),
        ("/files/", {"GET", "PROPFIND"}, {"MKCOL", "MOVE", "DELETE"}),
    ],
)
async def test_options_says_dav_1_and_what_the_path_allows(
    client: Client, path: str, allowed: set[str], refused: set[str]
) -> None:
    response = await client.options(path)
    assert response.status == 200
    assert response.headers["DAV"] == "1"
    allow = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "OPTIONS" in allow
    assert allowed <= allow
    assert not refused & allow


# -- PROPFIND ------------------------------------------------------------------------------


async def test_propfind_depth_0_on_a_file_has_every_live_property(client: Client) -> None:
    response = await propfind(client, "/files/data.bin", "0")
    assert response.status == 207
    assert response.headers["Content-Type"].startswith("application/xml")
    responses = by_href(await response.text())
    assert list(responses) == ["/files/data.bin"]
    found = props(responses["/files/data.bin"])
    assert found[f"{D}displayname"].text == "data.bin"
    assert found[f"{D}getcontentlength"].text == str(len(DATA))
    assert found[f"{D}getcontenttype"].text == "application/octet-stream"
    head = await client.head("/files/data.bin")
    assert found[f"{D}getetag"].text == head.headers["ETag"]
    assert found[f"{D}getlastmodified"].text == head.headers["Last-Modified"]
    assert (found[f"{D}creationdate"].text or "").endswith("Z")
    assert not is_collection(responses["/files/data.bin"])


async def test_propfind_depth_1_lists_the_directory_and_its_members(client: Client) -> None:
    response = await propfind(client, "/files/", "1")
    assert response.status == 207
    responses = by_href(await response.text())
    assert set(responses) == {"/files/", "/files/docs/", "/files/data.bin"}
    assert is_collection(responses["/files/"])
    assert is_collection(responses["/files/docs/"])
    member = props(responses["/files/data.bin"])
    assert member[f"{D}getcontentlength"].text == str(len(DATA))
    head = await client.head("/files/data.bin")
    assert member[f"{D}getetag"].text == head.headers["ETag"]


async def test_propfind_of_a_directory_without_its_slash_and_depth_0(client: Client) -> None:
    responses = by_href(await (await propfind(client, "/files/docs", "0")).text())
    assert list(responses) == ["/files/docs/"]
    assert is_collection(responses["/files/docs/"])
    responses = by_href(await (await propfind(client, "/files/docs", "1")).text())
    assert set(responses) == {"/files/docs/", "/files/docs/readme.txt"}


async def test_propfind_answer_is_xml_whatever_names_lie_on_disk(
    client: Client, storage_root: Path
) -> None:
    (storage_root / "docs" / "odd\x01&<name>.txt").write_bytes(b"placed by hand")
    responses = by_href(await (await propfind(client, "/files/docs/", "1")).text())
    names = {props(r)[f"{D}displayname"].text for r in responses.values()}
    assert "odd\ufffd&<name>.txt" in names


async def test_propfind_prop_request_reports_unknown_properties_as_404(client: Client) -> None:
    response = await propfind(client, "/files/data.bin", "0", data=PROP_REQUEST)
    assert response.status == 207
    answer = by_href(await response.text())["/files/data.bin"]
    assert set(props(answer)) == {f"{D}getetag", f"{D}resourcetype"}
    assert set(props(answer, "404 Not Found")) == {"{urn:example}colour"}


async def test_propfind_propname_gives_names_without_values(client: Client) -> None:
    body = b'<?xml version="1.0"?><propfind xmlns="DAV:"><propname/></propfind>'
    answer = by_href(await (await propfind(client, "/files/data.bin", "0", data=body)).text())
    names = props(answer["/files/data.bin"])
    assert f"{D}getcontentlength" in names
    assert all(not element.text and len(element) == 0 for element in names.values())


async def test_propfind_allprop_body_is_the_empty_bodys_answer(client: Client) -> None:
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
    with_body = await (await propfind(client, "/files/docs/", "1", data=body)).text()
    without = await (await propfind(client, "/files/docs/", "1")).text()
    assert with_body == without


@pytest.mark.parametrize("depth", ["infinity", "Infinity", None])
async def test_propfind_depth_infinity_is_403_finite_depth(
    client: Client, depth: str | None
) -> None:
    response = await propfind(client, "/files/", depth)
    assert response.status == 403
    root = ET.fromstring(await response.text())
    assert root.tag == f"{D}error"
    assert root.find(f"{D}propfind-finite-depth") is not None


async def test_propfind_bad_depth_is_400(client: Client) -> None:
    assert (await propfind(client, "/files/", "2")).status == 400


async def test_propfind_billion_laughs_is_refused_fast(client: Client) -> None:
    started = time.monotonic()
    response = await propfind(client, "/files/", "1", data=BILLION_LAUGHS)
    assert response.status == 400
    assert time.monotonic() - started < 1.0
    assert "lol" not in await response.text()


async def test_propfind_external_entity_is_refused(client: Client) -> None:
    response = await propfind(client, "/files/", "1", data=EXTERNAL_ENTITY)
    assert response.status == 400
    assert "root:" not in await response.text()


@pytest.mark.parametrize(
    "body",
    [b"<not-closed", b'<?xml version="1.0"?><other xmlns="DAV:"/>', b"<propfind/>"],
    ids=["malformed", "not-propfind", "no-namespace"],
)
async def test_propfind_bodies_that_are_not_a_propfind_are_400(client: Client, body: bytes) -> None:
    assert (await propfind(client, "/files/", "1", data=body)).status == 400


async def test_propfind_body_over_the_limit_is_413(client: Client) -> None:
    big = b"<!--" + b"x" * MAX_BODY_BYTES + b"-->"
    assert (await propfind(client, "/files/", "1", data=big)).status == 413

    async def chunked() -> Any:
        for _ in range(3):
            yield b" " * MAX_BODY_BYTES

    assert (await propfind(client, "/files/", "1", data=chunked())).status == 413


async def test_propfind_of_nothing_is_404(client: Client) -> None:
    assert (await propfind(client, "/files/missing", "0")).status == 404
    assert (await propfind(client, "/files/missing/", "1")).status == 404


# -- MKCOL ---------------------------------------------------------------------------------


async def test_mkcol_creates_a_directory_then_405(client: Client) -> None:
    response = await client.request("MKCOL", "/files/new")
    assert response.status == 201
    responses = by_href(await (await propfind(client, "/files/new/", "1")).text())
    assert list(responses) == ["/files/new/"]
    assert is_collection(responses["/files/new/"])
    again = await client.request("MKCOL", "/files/new")
    assert again.status == 405
    assert "PROPFIND" in again.headers["Allow"]
    assert (await client.request("MKCOL", "/files/new/inner/")).status == 201
    assert (await client.put("/files/new/inner/x.txt", data=b"x")).status == 201


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/files/data.bin", 405),
        ("/files/", 405),
        ("/files/docs", 405),
        ("/files/absent/child", 409),
        ("/files/data.bin/child", 409),
    ],
)
async def test_mkcol_where_it_cannot(client: Client, path: str, status: int) -> None:
    assert (await client.request("MKCOL", path)).status == status


async def test_mkcol_with_a_body_is_415(client: Client) -> None:
    response = await client.request("MKCOL", "/files/withbody", data=b"<x/>")
    assert response.status == 415
    assert (await propfind(client, "/files/withbody", "0")).status == 404


# -- COPY and MOVE ------------------------------------------------------------------------


def destination(client: Client, path: str) -> dict[str, str]:
    return {"Destination": str(client.make_url(path))}


async def document(client: Client, path: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/artifacts/{path}")
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def test_copy_keeps_digest_type_and_ttl(client: Client) -> None:
    put = await client.put(
        "/files/src/a.dat",
        data=b"payload",
        headers={"X-Artifact-TTL": "7d", "Content-Type": "text/x-custom"},
    )
    assert put.status == 201
    before = await document(client, "src/a.dat")
    response = await client.request(
        "COPY", "/files/src/a.dat", headers=destination(client, "/files/data.copy")
    )
    assert response.status == 201
    after = await document(client, "data.copy")
    for key in ("sha256", "size", "content_type", "expires_at"):
        assert after[key] == before[key], key
    assert await (await client.get("/files/data.copy")).read() == b"payload"
    assert (await client.get("/files/src/a.dat")).status == 200


async def test_copy_overwrite_f_is_412_and_t_is_204(client: Client) -> None:
    headers = {"Destination": "/files/docs/readme.txt"}
    refused = await client.request("COPY", "/files/data.bin", headers={**headers, "Overwrite": "F"})
    assert refused.status == 412
    assert await (await client.get("/files/docs/readme.txt")).read() == b"read me\n"
    replaced = await client.request("COPY", "/files/data.bin", headers=headers)
    assert replaced.status == 204
    assert await (await client.get("/files/docs/readme.txt")).read() == DATA


async def test_move_keeps_the_artifact_and_removes_the_source(client: Client) -> None:
    await client.put("/files/m/a.txt", data=b"moving", headers={"X-Artifact-TTL": "1h"})
    before = await document(client, "m/a.txt")
    response = await client.request(
        "MOVE", "/files/m/a.txt", headers=destination(client, "/files/docs/b.txt")
    )
    assert response.status == 201
    assert (await client.get("/files/m/a.txt")).status == 404
    after = await document(client, "docs/b.txt")
    for key in ("sha256", "size", "content_type", "expires_at"):
        assert after[key] == before[key], key


async def test_move_and_copy_a_directory_tree(client: Client) -> None:
    for name in ("t/a.txt", "t/sub/b.txt"):
        assert (await client.put(f"/files/{name}", data=name.encode())).status == 201
    copied = await client.request("COPY", "/files/t/", headers={"Destination": "/files/t2/"})
    assert copied.status == 201
    moved = await client.request("MOVE", "/files/t", headers={"Destination": "/files/t3"})
    assert moved.status == 201
    for root in ("t2", "t3"):
        for name in ("a.txt", "sub/b.txt"):
            body = await (await client.get(f"/files/{root}/{name}")).read()
            assert body == f"t/{name}".encode()
    assert (await client.get("/files/t/a.txt")).status == 404
    assert (await client.get("/files/t/sub/b.txt")).status == 404
    # Overwrite T over a collection replaces it whole (§9.8.4).
    await client.put("/files/t4/only.txt", data=b"old")
    replaced = await client.request("COPY", "/files/t2", headers={"Destination": "/files/t4"})
    assert replaced.status == 204
    assert (await client.get("/files/t4/only.txt")).status == 404
    assert (await client.get("/files/t4/a.txt")).status == 200


async def test_copy_depth_0_of_a_collection_copies_only_the_collection(client: Client) -> None:
    response = await client.request(
        "COPY", "/files/docs", headers={"Destination": "/files/docs0", "Depth": "0"}
    )
    assert response.status == 201
    responses = by_href(await (await propfind(client, "/files/docs0/", "1")).text())
    assert list(responses) == ["/files/docs0/"]


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("COPY", {}, 400),
        ("COPY", {"Destination": "http://elsewhere.example/files/x"}, 502),
        ("MOVE", {"Destination": "ftp://127.0.0.1/files/x"}, 502),
        ("COPY", {"Destination": "/api/v1/artifacts/x"}, 502),
        ("MOVE", {"Destination": "/files/data.bin"}, 403),
        ("MOVE", {"Destination": "/files/"}, 403),
        ("COPY", {"Destination": "/files/absent/x"}, 409),
        ("COPY", {"Destination": "/files/x", "Overwrite": "maybe"}, 400),
        ("COPY", {"Destination": "/files/a/%2e%2e/%2e%2e/x"}, 400),
        ("COPY", {"Destination": "/files/.artifactd/x"}, 404),
    ],
)
async def test_copy_and_move_refusals(
    client: Client, method: str, headers: dict[str, str], status: int
) -> None:
    response = await client.request(method, "/files/data.bin", headers=headers)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert (await client.get("/files/data.bin")).status == 200


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
async def test_copy_and_move_into_a_content_address_check_its_name(
    client: Client, method: str
) -> None:
    """A `cas/<sha256>` destination takes only bytes hashing to its name, as a PUT there."""
    right = hashlib.sha256(DATA).hexdigest()
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    for collection in ("/files/cache/", "/files/cache/cas/"):
        assert (await client.request("MKCOL", collection)).status == 201
    refused = await client.request(
        method, "/files/data.bin", headers={"Destination": f"/files/cache/cas/{wrong}"}
    )
    assert refused.status == 400
    assert (await client.get(f"/files/cache/cas/{wrong}")).status == 404
    assert (await client.get("/files/data.bin")).status == 200  # MOVE left the source
    accepted = await client.request(
        method, "/files/data.bin", headers={"Destination": f"/files/cache/cas/{right}"}
    )
    assert accepted.status == 201
    assert await (await client.get(f"/files/cache/cas/{right}")).read() == DATA


@pytest.mark.parametrize("target", ["/files/t/", "/files/t"])
async def test_delete_of_a_collection_removes_everything_under_it(
    client: Client, target: str
) -> None:
    """RFC 4918 §9.6.1: DELETE of a collection acts as if Depth were infinity (204)."""
    for name in ("t/a.txt", "t/sub/b.txt", "t2/c.txt"):
        assert (await client.put(f"/files/{name}", data=b"x")).status == 201
    assert (await client.request("MKCOL", "/files/t/empty")).status == 201
    assert (await client.delete(target)).status == 204
    for gone in ("/files/t/a.txt", "/files/t/sub/b.txt"):
        assert (await client.get(gone)).status == 404
    assert (await propfind(client, "/files/t/", "0")).status == 404
    assert (await client.get("/files/t2/c.txt")).status == 200  # a sibling with the prefix
    assert (await client.delete(target)).status == 404


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        ("/files/", {}, 403),
        ("/files/docs/", {"Depth": "0"}, 400),
        ("/files/docs", {"Depth": "1"}, 400),
        ("/files/absent/", {}, 404),
    ],
)
async def test_delete_of_a_collection_refusals(
    client: Client, target: str, headers: dict[str, str], status: int
) -> None:
    response = await client.delete(target, headers=headers)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert (await client.get("/files/docs/readme.txt")).status == 200


async def test_copy_into_itself_and_of_nothing(client: Client) -> None:
    into = await client.request("COPY", "/files/docs", headers={"Destination": "/files/docs/x"})
    assert into.status == 403
    missing = await client.request("MOVE", "/files/absent", headers={"Destination": "/files/y"})
    assert missing.status == 404
    depth1 = await client.request(
        "MOVE", "/files/docs", headers={"Destination": "/files/y", "Depth": "0"}
    )
    assert depth1.status == 400


async def test_immutable_refuses_replacing_a_destination(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    await store_bytes(fs_store, "a.txt", b"a")
    await store_bytes(fs_store, "b.txt", b"b")
    app = create_app(Settings(root=storage_root, immutable=True), fs_store)
    client = await aiohttp_client(app)
    refused = await client.request("COPY", "/files/a.txt", headers={"Destination": "/files/b.txt"})
    assert refused.status == 409
    assert await (await client.get("/files/b.txt")).read() == b"b"
    moved = await client.request("MOVE", "/files/a.txt", headers={"Destination": "/files/c.txt"})
    assert moved.status == 201


async def test_every_method_on_the_memory_backend(
    aiohttp_client: ClientFactory, storage_root: Path
) -> None:
    store: Store = MemoryStore()
    client = await aiohttp_client(create_app(Settings(root=storage_root), store))
    assert (await client.request("MKCOL", "/files/d")).status == 201
    assert (await client.put("/files/d/x.txt", data=b"x")).status == 201
    assert (
        await client.request("COPY", "/files/d", headers={"Destination": "/files/e"})
    ).status == 201
    assert (
        await client.request("MOVE", "/files/e/x.txt", headers={"Destination": "/files/d/y.txt"})
    ).status == 201
    responses = by_href(await (await propfind(client, "/files/d/", "1")).text())
    assert set(responses) == {"/files/d/", "/files/d/x.txt", "/files/d/y.txt"}
    assert (await client.request("MKCOL", "/files/m")).status == 201
    assert (await client.request("MKCOL", "/files/m/empty")).status == 201
    moved = await client.request("MOVE", "/files/m", headers={"Destination": "/files/n"})
    assert moved.status == 201
    assert (await propfind(client, "/files/m/", "0")).status == 404
    assert (await propfind(client, "/files/n/", "0")).status == 207


async def test_every_method_on_the_s3_backend(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, storage_root: Path
) -> None:
    store = await open_s3_store(seaweed, s3_bucket)
    client = await aiohttp_client(create_app(Settings(root=storage_root), store))
    assert (await client.request("MKCOL", "/files/d")).status == 201
    assert (await client.request("MKCOL", "/files/d")).status == 405
    assert (await client.request("MKCOL", "/files/d/e")).status == 201
    assert (await client.request("MKCOL", "/files/absent/e")).status == 409
    empty = by_href(await (await propfind(client, "/files/d/e/", "1")).text())
    assert list(empty) == ["/files/d/e/"]
    put = await client.put("/files/d/x.txt", data=b"x", headers={"X-Artifact-TTL": "1d"})
    assert put.status == 201
    before = await document(client, "d/x.txt")
    copied = await client.request("COPY", "/files/d", headers={"Destination": "/files/c"})
    assert copied.status == 201
    moved = await client.request(
        "MOVE", "/files/c/x.txt", headers={"Destination": "/files/d/e/y.txt"}
    )
    assert moved.status == 201
    after = await document(client, "d/e/y.txt")
    for key in ("sha256", "size", "content_type", "expires_at"):
        assert after[key] == before[key], key
    responses = by_href(await (await propfind(client, "/files/d/", "1")).text())
    assert set(responses) == {"/files/d/", "/files/d/e/", "/files/d/x.txt"}
    assert is_collection(responses["/files/d/e/"])
    moved_dir = await client.request("MOVE", "/files/d", headers={"Destination": "/files/f"})
    assert moved_dir.status == 201
    assert (await propfind(client, "/files/d/", "0")).status == 404
    assert (await propfind(client, "/files/d/e/", "0")).status == 404
    assert (await client.get("/files/f/e/y.txt")).status == 200


# -- access rules --------------------------------------------------------------------------


@pytest.fixture
def tokens(storage_root: Path) -> dict[str, str]:
    store = TokenStore(storage_root)
    return {
        "read": store.add("reader", "read"),
        "write": store.add("writer", "write"),
        "myproj": store.add("myproj-ci", "write", prefix="myproj/"),
    }


@pytest.fixture
def make_client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> MakeClient:
    async def make(*, private: bool = False) -> Client:
        await store_bytes(fs_store, "public.txt", b"hello\n")
        await store_bytes(fs_store, "myproj/1/app.bin", b"app")
        return await aiohttp_client(
            create_app(Settings(root=storage_root, private=private), fs_store)
        )

    return make


async def test_propfind_and_options_are_public_reads(
    make_client: MakeClient, tokens: dict[str, str]
) -> None:
    public = await make_client()
    assert (await propfind(public, "/files/", "1")).status == 207
    assert (await public.options("/files/public.txt")).status == 200


async def test_propfind_and_options_need_read_when_private(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    private = await make_client(private=True)
    assert (await propfind(private, "/files/", "1")).status == 401
    assert (await private.options("/files/public.txt")).status == 401
    assert (await propfind(private, "/files/", "1", headers=auth(tokens["read"]))).status == 207


@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("MKCOL", "/files/newdir", {}),
        ("COPY", "/files/public.txt", {"Destination": "/files/c.txt"}),
        ("MOVE", "/files/public.txt", {"Destination": "/files/m.txt"}),
    ],
)
async def test_changing_methods_need_a_write_token(
    make_client: MakeClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    extra: dict[str, str],
    auth: Auth,
) -> None:
    client = await make_client()
    assert (await client.request(method, path, headers=extra)).status == 401
    read_only = await client.request(method, path, headers={**auth(tokens["read"]), **extra})
    assert read_only.status == 403
    assert (await client.get("/files/public.txt")).status == 200
    allowed = await client.request(method, path, headers={**auth(tokens["write"]), **extra})
    assert allowed.status == 201


@pytest.mark.parametrize(
    ("method", "path", "target", "private", "status"),
    [
        ("MKCOL", "/files/myproj/2", None, False, 201),
        ("MKCOL", "/files/other", None, False, 403),
        ("COPY", "/files/public.txt", "/files/myproj/p.txt", False, 201),  # public source
        ("COPY", "/files/public.txt", "/files/myproj/p.txt", True, 403),  # private source
        ("COPY", "/files/myproj/1/app.bin", "/files/other.bin", False, 403),
        ("MOVE", "/files/public.txt", "/files/myproj/p.txt", False, 403),  # removes the source
        ("MOVE", "/files/myproj/1/app.bin", "/files/myproj/2.bin", False, 201),
        ("MOVE", "/files/myproj/1/app.bin", "/files/myproj", False, 403),
        ("MOVE", "/files/myproj", "/files/myproj/x", False, 403),
        ("DELETE", "/files/myproj/1/", None, False, 204),
        ("DELETE", "/files/myproj/1", None, False, 204),
        ("DELETE", "/files/myproj/", None, False, 403),  # its whole prefix: no
        ("DELETE", "/files/myproj", None, False, 403),
        ("DELETE", "/files/", None, False, 403),
    ],
)
async def test_a_prefixed_token_moves_and_copies_only_within_its_prefix(
    make_client: MakeClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    target: str | None,
    private: bool,
    status: int,
    auth: Auth,
) -> None:
    client = await make_client(private=private)
    extra = {} if target is None else {"Destination": target}
    response = await client.request(method, path, headers={**auth(tokens["myproj"]), **extra})
    assert response.status == status


async def test_expect_100_continue_is_refused_before_the_body(
    make_client: MakeClient, tokens: dict[str, str]
) -> None:
    """A client that may not write gets its 401 instead of `100 Continue`, and never sends
    the body."""
    client = await make_client()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"MOVE /files/public.txt HTTP/1.1\r\nHost: x\r\nDestination: /files/m.txt\r\n"
        b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 401 "), status_line
    assert (await client.get("/files/public.txt")).status == 200

"""`.` segments through the app (SPEC "Artifact paths"): dropped, as RFC 3986 §5.2.4 says.

Every method acts on the path without them; `..` stays refused however it is spelled. The
targets go out as written: the test client would resolve dot segments itself (joining a
relative URL to its base does), so requests use absolute, already-encoded URLs instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import FormData
from yarl import URL

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from tests.web.conftest import Client, ClientFactory


async def send(client: Client, method: str, target: str, **kwargs: Any) -> aiohttp.ClientResponse:
    """`target` exactly as written, dot segments and escapes included."""
    url = URL(f"http://{client.host}:{client.port}{target}", encoded=True)
    assert url.raw_path == target.partition("?")[0]
    kwargs.setdefault("allow_redirects", False)
    return await client.session.request(method, url, **kwargs)


@pytest.mark.parametrize(
    "target",
    [
        "/files/docs/./readme.txt",
        "/files/./docs/readme.txt",
        "/files/docs/%2e/readme.txt",
        "/files/docs/%2E/./readme.txt",
    ],
)
async def test_get_and_head_serve_the_path_without_the_dot(client: Client, target: str) -> None:
    resp = await send(client, "GET", target)
    assert (resp.status, await resp.read()) == (200, b"read me\n")
    head = await send(client, "HEAD", target)
    assert (head.status, head.headers["Content-Length"]) == (200, "8")


async def test_put_and_delete_act_on_the_path_without_the_dot(
    client: Client, fs_store: FilesystemStore, storage_root: Path
) -> None:
    resp = await send(client, "PUT", "/files/repo/./InRelease", data=b"release\n")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["path"] == "repo/InRelease"
    assert resp.headers["Location"] == "/files/repo/InRelease"
    assert (storage_root / "repo" / "InRelease").read_bytes() == b"release\n"
    resp = await send(client, "PUT", "/files/repo/%2e/InRelease", data=b"second\n")
    assert resp.status == 200  # replaced: the same artifact
    assert (await fs_store.info("repo/InRelease")).size == 7
    assert (await send(client, "DELETE", "/files/./repo/./InRelease")).status == 204
    assert (await client.get("/files/repo/InRelease")).status == 404


@pytest.mark.parametrize("target", ["/files/docs/./", "/files/docs/.", "/files/docs/%2e"])
async def test_a_trailing_dot_segment_lists_the_directory(client: Client, target: str) -> None:
    resp = await send(client, "GET", target + "?format=json")
    assert resp.status == 200
    listing = await resp.json()
    assert listing["path"] == "docs"
    assert [e["name"] for e in listing["entries"]] == ["readme.txt"]


@pytest.mark.parametrize("target", ["/files/.", "/files/./", "/files/%2E/"])
async def test_a_dot_alone_is_the_root(client: Client, target: str) -> None:
    resp = await send(client, "GET", target + "?format=json")
    assert resp.status == 200
    assert (await resp.json())["path"] == ""


async def test_a_directory_reached_through_a_dot_redirects_to_its_normalised_url(
    client: Client,
) -> None:
    resp = await send(client, "GET", "/files/./docs")
    assert (resp.status, resp.headers["Location"]) == (301, "/files/docs/")


async def test_a_put_to_a_directory_named_with_a_trailing_dot_is_refused(
    client: Client,
) -> None:
    resp = await send(client, "PUT", "/files/docs/.", data=b"x")
    assert resp.status == 405  # a directory URL takes GET, HEAD, POST and DELETE
    assert "POST" in resp.headers["Allow"]
    assert (await client.get("/files/docs/readme.txt")).status == 200


async def test_a_delete_of_a_directory_named_with_a_trailing_dot_is_the_directorys(
    client: Client,
) -> None:
    """`docs/.` is `docs/`: its DELETE is the collection's (WebDAV), Depth rules included."""
    refused = await send(client, "DELETE", "/files/docs/.", headers={"Depth": "0"})
    assert refused.status == 400
    assert (await client.get("/files/docs/readme.txt")).status == 200
    assert (await send(client, "DELETE", "/files/docs/.")).status == 204
    assert (await client.get("/files/docs/readme.txt")).status == 404


async def test_a_form_posted_to_a_dot_directory_lands_in_the_directory(
    client: Client, storage_root: Path
) -> None:
    form = FormData()
    form.add_field("file", b"posted", filename="p.txt")
    resp = await send(
        client, "POST", "/files/docs/./", data=form, headers={"Accept": "application/json"}
    )
    assert resp.status == 201, await resp.text()
    assert (storage_root / "docs" / "p.txt").read_bytes() == b"posted"


async def test_the_api_reads_metadata_through_a_dot_segment(client: Client) -> None:
    resp = await send(client, "GET", "/api/v1/artifacts/docs/./readme.txt")
    assert resp.status == 200
    assert (await resp.json())["path"] == "docs/readme.txt"
    assert (await send(client, "GET", "/api/v1/artifacts/docs/.")).status == 404


@pytest.mark.parametrize(
    "target",
    [
        "/files/./../x",
        "/files/docs/./../data.bin",
        "/files/docs/%2e/%2e%2e/data.bin",
        "/files/docs/.%2E/data.bin",
        "/files/docs/%252e/readme.txt",
        "/files/docs/.//readme.txt",
    ],
)
async def test_dotdot_and_doubly_encoded_dots_stay_refused(client: Client, target: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        resp = await send(client, method, target, data=b"x" if method == "PUT" else None)
        assert resp.status == 400, (method, target)
        assert (await resp.json())["error"].startswith("invalid path")


async def test_the_internal_directory_stays_unreachable_through_a_dot(client: Client) -> None:
    for target in ("/files/./.artifactd/metadata.db", "/files/%2e/.artifactd/"):
        assert (await send(client, "GET", target)).status == 404


@pytest.fixture
def ci_token(storage_root: Path) -> str:
    """A write token limited to `myproj/`, made before the event loop runs (as the CLI)."""
    return TokenStore(storage_root).add("ci", "write", prefix="myproj/")


async def test_a_prefixed_token_is_judged_on_the_path_without_dots(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path, ci_token: str
) -> None:
    client = await aiohttp_client(create_app(Settings(root=storage_root), fs_store))
    auth = {"Authorization": f"Bearer {ci_token}"}
    ok = await send(client, "PUT", "/files/myproj/./1/app.bin", data=b"a", headers=auth)
    assert ok.status == 201, await ok.text()
    assert (await ok.json())["path"] == "myproj/1/app.bin"
    refused = await send(client, "PUT", "/files/./other/app.bin", data=b"a", headers=auth)
    assert refused.status == 403
    refused = await send(client, "PUT", "/files/myproj/.", data=b"a", headers=auth)
    assert refused.status == 403  # the prefix itself is a directory, not a file
    assert not (storage_root / "other").exists()

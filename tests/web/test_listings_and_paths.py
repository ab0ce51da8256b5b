"""Listings, redirects and path safety through the app, in-process."""

from __future__ import annotations

import pytest
from yarl import URL

from artifactd.store.filesystem import FilesystemStore
from tests.web.conftest import Client, store_bytes


async def test_root_redirects_to_files(client: Client) -> None:
    for path in ("/", "/files"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 301
        assert resp.headers["Location"] == "/files/"


async def test_directory_without_slash_redirects_to_slash_form(client: Client) -> None:
    resp = await client.get("/files/docs", allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == "/files/docs/"


async def test_redirect_location_is_built_from_the_normalised_path(
    client: Client, fs_store: FilesystemStore
) -> None:
    await store_bytes(fs_store, "we ird/x", b"x")
    resp = await client.get(URL("/files/we%20ird", encoded=True), allow_redirects=False)
    assert resp.headers["Location"] == "/files/we%20ird/"


async def test_file_with_trailing_slash_is_not_found(client: Client) -> None:
    resp = await client.get("/files/data.bin/")
    assert resp.status == 404


async def test_json_listing_by_query_and_by_accept(client: Client) -> None:
    by_query = await (await client.get("/files/?format=json")).json()
    by_accept = await (await client.get("/files/", headers={"Accept": "application/json"})).json()
    assert by_query == by_accept
    assert by_query["path"] == ""
    names = [(e["name"], e["type"]) for e in by_query["entries"]]
    assert names == [("docs", "dir"), ("data.bin", "file")]
    file_entry = by_query["entries"][1]
    assert file_entry["size"] == 10240
    assert len(file_entry["sha256"]) == 64
    assert file_entry["modified"].endswith("Z")
    assert file_entry["expires_at"] is None


async def test_browser_accept_gets_html(client: Client) -> None:
    resp = await client.get(
        "/files/docs/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    text = await resp.text()
    assert '<a href="readme.txt">readme.txt</a>' in text
    assert '<a href="../">' in text


async def test_listing_escapes_hostile_names(client: Client, fs_store: FilesystemStore) -> None:
    await store_bytes(fs_store, 'evil/<script>alert("x")</script>.txt', b"x")
    text = await (await client.get("/files/evil/")).text()
    assert '<script>alert("x")' not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)" in text
    assert "%3Cscript%3E" in text


async def test_listing_of_missing_directory_is_404(client: Client) -> None:
    assert (await client.get("/files/absent/")).status == 404


async def test_internal_directory_is_hidden_and_unreachable(client: Client) -> None:
    listing = await (await client.get("/files/?format=json")).json()
    assert ".artifactd" not in [e["name"] for e in listing["entries"]]
    for path in ("/files/.artifactd/metadata.db", "/files/.artifactd/", "/files/.artifactd"):
        resp = await client.get(path)
        assert resp.status == 404, path


@pytest.mark.parametrize(
    "raw",
    [
        "/files/%2e%2e/etc/passwd",
        "/files/%2E%2E/x",
        "/files/..%2fx",
        "/files/%252e%252e/x",
        "/files/a%5cb",
        "/files/a%00b",
        "/files//etc/passwd",
        "/files/a//b",
        "/files/%c0%ae%c0%ae/x",
        "/files/%ff",
        "/files/" + "a" * 256,
        "/files/" + "/".join(["abcdefghi"] * 103),
    ],
)
async def test_unsafe_paths_are_rejected_with_400(client: Client, raw: str) -> None:
    resp = await client.get(URL(raw, encoded=True))
    assert resp.status == 400, raw
    body = await resp.json()
    assert body["status"] == 400
    assert body["error"].startswith("invalid path")


async def test_unexpected_failure_is_a_json_500_without_traceback(
    client: Client, monkeypatch: pytest.MonkeyPatch, fs_store: FilesystemStore
) -> None:
    async def explode(path: str) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(fs_store, "open", explode)
    resp = await client.get("/files/data.bin")
    assert resp.status == 500
    assert await resp.json() == {"error": "internal error", "status": 500}


async def test_browse_page_sorts_filters_and_offers_curl_commands(
    client: Client, fs_store: FilesystemStore
) -> None:
    await store_bytes(fs_store, "b/small.txt", b"s")
    await store_bytes(fs_store, "b/large.txt", b"l" * 5000, expires_at=4_000_000_000.0)
    await store_bytes(fs_store, "b/sub/x", b"x")
    page = await (await client.get("/files/b/?sort=size&order=desc")).text()
    assert page.index("sub/") < page.index("large.txt") < page.index("small.txt")
    assert "4.9 KiB" in page
    assert "2096-10-02 07:06:40" in page  # expiry shown
    host = f"{client.host}:{client.port}"
    assert f"curl -fO http://{host}/files/b/large.txt" in page
    assert '<form method="post" enctype="multipart/form-data"' in page

    ascending = await (await client.get("/files/b/?sort=size&order=asc")).text()
    assert ascending.index("small.txt") < ascending.index("large.txt")
    filtered = await (await client.get("/files/b/?filter=LARGE")).text()
    assert "large.txt" in filtered
    assert "small.txt" not in filtered


async def test_browse_form_upload_with_ttl_field(client: Client) -> None:
    from aiohttp import FormData

    form = FormData()
    form.add_field("ttl", "1h")
    form.add_field("file", b"from the browser", filename="note.txt")
    resp = await client.post("/files/b/", data=form, allow_redirects=False)
    assert resp.status == 303
    listing = await (await client.get("/files/b/?format=json")).json()
    (entry,) = [e for e in listing["entries"] if e["name"] == "note.txt"]
    assert entry["expires_at"] is not None


async def test_a_json_listing_pages_with_limit_and_cursor(
    client: Client, fs_store: FilesystemStore
) -> None:
    for name in ["big/f3", "big/f1", "big/sub/x", "big/f2"]:
        await store_bytes(fs_store, name, b"x")
    seen: list[str] = []
    query = "format=json&limit=2"
    while True:
        resp = await client.get(f"/files/big/?{query}")
        assert resp.status == 200
        page = await resp.json()
        assert len(page["entries"]) <= 2
        seen += [e["name"] for e in page["entries"]]
        if page["next_cursor"] is None:
            break
        query = f"format=json&limit=2&cursor={page['next_cursor']}"
    assert seen == ["sub", "f1", "f2", "f3"]
    whole = await (await client.get("/files/big/?format=json")).json()
    assert "next_cursor" not in whole  # without limit: the whole directory, as before
    for bad in ["limit=0", "limit=1001", "limit=2&cursor=%%%"]:
        assert (await client.get(f"/files/big/?format=json&{bad}")).status == 400

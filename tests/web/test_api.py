"""The /api/v1 sub-application in-process: paging, metadata, stats, event stream."""

from __future__ import annotations

import asyncio

import pytest

from artifactd.web import api
from tests.web.conftest import Client


async def put_many(client: Client, paths: list[str]) -> None:
    for path in paths:
        assert (await client.put(f"/files/{path}", data=path.encode())).status == 201


async def test_paging_walks_every_artifact_once_in_path_order(client: Client) -> None:
    paths = [f"p/{i:02d}.bin" for i in range(7)]
    await put_many(client, paths)
    seen: list[str] = []
    cursor = None
    while True:
        query = "prefix=p/&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(f"/api/v1/artifacts?{query}")).json()
        seen += [a["path"] for a in page["artifacts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == paths
    first = (await (await client.get("/api/v1/artifacts?prefix=p/&limit=1")).json())["artifacts"]
    assert set(first[0]) == {
        "path",
        "size",
        "sha256",
        "etag",
        "content_type",
        "created_at",
        "expires_at",
        "last_accessed",
    }


async def test_a_cursor_past_a_deleted_artifact_continues_after_it(client: Client) -> None:
    await put_many(client, ["q/a", "q/b", "q/c", "q/d"])
    first = await (await client.get("/api/v1/artifacts?prefix=q/&limit=2")).json()
    assert [a["path"] for a in first["artifacts"]] == ["q/a", "q/b"]
    assert (await client.delete("/files/q/b")).status == 204
    cursor = first["next_cursor"]
    rest = await (await client.get(f"/api/v1/artifacts?prefix=q/&cursor={cursor}")).json()
    assert [a["path"] for a in rest["artifacts"]] == ["q/c", "q/d"]
    assert rest["next_cursor"] is None


async def test_stats_follow_uploads_replacements_and_deletes(client: Client) -> None:
    before = await (await client.get("/api/v1/stats")).json()
    await put_many(client, ["t/a", "t/b"])
    assert (await client.put("/files/t/a", data=b"longer body")).status == 200
    assert (await client.delete("/files/t/b")).status == 204
    after = await (await client.get("/api/v1/stats")).json()
    assert after["artifacts"] == before["artifacts"] + 1
    assert after["bytes"] == before["bytes"] + len(b"longer body")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "cursor=%%%"])
async def test_bad_paging_parameters_are_400(client: Client, query: str) -> None:
    resp = await client.get(f"/api/v1/artifacts?{query}")
    assert resp.status == 400
    assert (await resp.json())["status"] == 400


async def test_one_artifacts_metadata_and_404(client: Client) -> None:
    await client.put("/files/m/x.txt", data=b"hello", headers={"X-Artifact-TTL": "1h"})
    await client.get("/files/m/x.txt")
    meta = await (await client.get("/api/v1/artifacts/m/x.txt")).json()
    assert meta["path"] == "m/x.txt"
    assert meta["size"] == 5
    assert meta["expires_at"] is not None
    assert meta["last_accessed"] is not None
    missing = await client.get("/api/v1/artifacts/m/nope")
    assert missing.status == 404
    assert (await client.get("/api/v1/artifacts/.artifactd/metadata.db")).status == 404
    assert missing.headers["Cache-Control"] == "no-store"


async def test_stats_count_live_and_expired_artifacts(client: Client) -> None:
    await client.put("/files/s/live", data=b"12345")
    await client.put("/files/s/dead", data=b"x", headers={"X-Artifact-TTL": "0s"})
    stats = await (await client.get("/api/v1/stats")).json()
    assert stats["artifacts"] == 3  # data.bin and docs/readme.txt from the fixture, s/live
    assert stats["bytes"] == 10240 + 8 + 5
    assert stats["expired_pending"] == 1
    assert stats["evicted_total"] == 0


async def test_event_stream_sends_heartbeats_and_events(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "HEARTBEAT_SECONDS", 0.05)
    resp = await client.get("/api/v1/events")
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert (await resp.content.readuntil(b"\n\n")) == b": connected\n\n"
    assert (await resp.content.readuntil(b"\n\n")) == b": heartbeat\n\n"
    await client.put("/files/e/1", data=b"1")
    block = b""
    while b"event: created" not in block:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert block.startswith(b"id: ")
    assert b'"path":"e/1"' in block
    resp.close()


async def test_bad_last_event_id_replays_everything(client: Client) -> None:
    await client.put("/files/r/1", data=b"1")
    resp = await client.get("/api/v1/events", headers={"Last-Event-ID": "garbage"})
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert b"event: created" in first
    resp.close()

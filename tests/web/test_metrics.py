"""`/metrics` in-process: the counters move with the traffic."""

from __future__ import annotations

import asyncio
import re

from tests.web.conftest import Client, sha256_hex


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample line, e.g. sample(t, "x_total", 'method="GET"')."""
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line):
            match = re.match(rf"{re.escape(name)}(\{{.*\}})? (\S+)$", line)
            if match:
                return float(match.group(2))
    return 0.0


async def scrape(client: Client) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def test_request_and_byte_counters_move(client: Client) -> None:
    before = await scrape(client)
    await client.get("/files/data.bin")
    await client.get("/files/data.bin", headers={"Range": "bytes=0-9"})
    await client.get("/files/missing")
    await client.put("/files/m/new.txt", data=b"x" * 1234)
    after = await scrape(client)

    route = 'route="/files/{tail}"'
    for status, expected in (("200", 1), ("206", 1), ("404", 1)):
        labels = f'method="GET",{route},status="{status}"'
        key = "artifactd_http_requests_total"
        assert sample(after, key, labels) - sample(before, key, labels) == expected, status
    put_labels = f'method="PUT",{route},status="201"'
    assert sample(after, "artifactd_http_requests_total", put_labels) == 1
    sent = sample(after, "artifactd_http_response_bytes_total") - sample(
        before, "artifactd_http_response_bytes_total"
    )
    assert sent >= 10240 + 10
    received = sample(after, "artifactd_http_request_bytes_total") - sample(
        before, "artifactd_http_request_bytes_total"
    )
    assert received >= 1234
    assert "artifactd_http_requests_in_flight" in after
    assert "artifactd_event_loop_lag_seconds" in after


async def test_checksum_failures_are_counted(client: Client) -> None:
    await client.put("/files/bad", data=b"abc", headers={"X-Checksum-Sha256": sha256_hex(b"x")})
    text = await scrape(client)
    assert sample(text, "artifactd_upload_checksum_failures_total") == 1


async def test_eviction_and_store_gauges_are_exported(client: Client) -> None:
    await client.put("/files/gone", data=b"x", headers={"X-Artifact-TTL": "0s"})
    from artifactd.web.keys import EVICTOR

    evictor = client.app[EVICTOR]
    # The startup pass may hold the maintenance lock (this one is then skipped): the gauges
    # are set when a pass ends, so wait for one of ours to run whole.
    while (await evictor.run_once()).skipped:
        await asyncio.sleep(0.02)
    text = await scrape(client)
    assert sample(text, "artifactd_evictions_total", 'reason="ttl"') == 1
    assert sample(text, "artifactd_evictions_total", 'reason="size"') == 0
    assert sample(text, "artifactd_stored_artifacts") == 2
    assert sample(text, "artifactd_stored_bytes") == 10240 + len(b"read me\n")

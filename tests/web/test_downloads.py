"""GET/HEAD of files in-process: headers, ranges, conditionals, every response path."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from tests.web.conftest import DATA, Client, sha256_hex


async def test_get_returns_body_and_all_representation_headers(client: Client) -> None:
    resp = await client.get("/files/data.bin")
    assert resp.status == 200
    assert await resp.read() == DATA
    h = resp.headers
    assert h["Content-Length"] == str(len(DATA))
    assert h["Content-Type"] == "application/octet-stream"
    assert h["Accept-Ranges"] == "bytes"
    assert h["ETag"] == f'"{sha256_hex(DATA)[:32]}"'
    assert "GMT" in h["Last-Modified"]
    digest = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    assert h["Repr-Digest"] == f"sha-256=:{digest}:"
    assert h["X-Checksum-Sha256"] == sha256_hex(DATA)
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Response-Time"].endswith("ms")
    assert len(h["X-Request-Id"]) >= 16


async def test_head_returns_the_same_headers_as_get_without_body(client: Client) -> None:
    get = await client.get("/files/docs/readme.txt")
    head = await client.head("/files/docs/readme.txt")
    assert head.status == 200
    assert await head.read() == b""
    skip = {"date", "x-request-id", "x-response-time"}
    assert {k.lower(): v for k, v in get.headers.items() if k.lower() not in skip} == {
        k.lower(): v for k, v in head.headers.items() if k.lower() not in skip
    }
    assert head.headers["Content-Type"] == "text/plain"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=10230-99999999999999999999", 10230, 10239),
        ("bytes=-99999999", 0, 10239),
        ("BYTES=5-5", 5, 5),
    ],
)
async def test_single_range_returns_206_with_content_range(
    client: Client, header: str, start: int, end: int
) -> None:
    resp = await client.get("/files/data.bin", headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert await resp.read() == DATA[start : end + 1]


async def test_head_with_range_returns_206_headers_only(client: Client) -> None:
    resp = await client.head("/files/data.bin", headers={"Range": "bytes=0-9"})
    assert resp.status == 206
    assert resp.headers["Content-Length"] == "10"
    assert await resp.read() == b""


async def test_multiple_ranges_return_multipart_byteranges(client: Client) -> None:
    resp = await client.get("/files/data.bin", headers={"Range": "bytes=0-9, 100-109, -5"})
    assert resp.status == 206
    body = await resp.read()
    assert resp.headers["Content-Length"] == str(len(body))
    content_type = resp.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = list(message.iter_parts())
    assert [p["Content-Range"] for p in parts] == [
        f"bytes 0-9/{len(DATA)}",
        f"bytes 100-109/{len(DATA)}",
        f"bytes 10235-10239/{len(DATA)}",
    ]
    assert [p.get_payload(decode=True) for p in parts] == [DATA[0:10], DATA[100:110], DATA[-5:]]
    assert all(p["Content-Type"] == "application/octet-stream" for p in parts)


async def test_overlapping_ranges_are_merged_not_amplified(client: Client) -> None:
    resp = await client.get("/files/data.bin", headers={"Range": "bytes=0-5000,100-6000,0-"})
    body = await resp.read()
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
    assert body == DATA


async def test_too_many_ranges_get_the_full_body(client: Client) -> None:
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))
    resp = await client.get("/files/data.bin", headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == DATA


@pytest.mark.parametrize("header", ["bytes=20000-", "bytes=10240-10300", "bytes=-0"])
async def test_unsatisfiable_range_returns_416_with_size(client: Client, header: str) -> None:
    resp = await client.get("/files/data.bin", headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert (await resp.json()) == {"error": "range not satisfiable", "status": 416}


@pytest.mark.parametrize("header", ["bytes=5-1", "bytes=abc", "items=0-5", "bytes=", "bytes 0-5"])
async def test_malformed_or_foreign_range_is_ignored(client: Client, header: str) -> None:
    resp = await client.get("/files/data.bin", headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == DATA


async def test_if_none_match_with_current_etag_gives_304_with_validators(client: Client) -> None:
    etag = (await client.head("/files/data.bin")).headers["ETag"]
    resp = await client.get("/files/data.bin", headers={"If-None-Match": f'"x", {etag}'})
    assert resp.status == 304
    assert resp.headers["ETag"] == etag
    assert "Last-Modified" in resp.headers
    assert await resp.read() == b""


async def test_weak_if_none_match_also_matches(client: Client) -> None:
    etag = (await client.head("/files/data.bin")).headers["ETag"]
    resp = await client.get("/files/data.bin", headers={"If-None-Match": f"W/{etag}"})
    assert resp.status == 304


async def test_if_match_mismatch_gives_412_json(client: Client) -> None:
    resp = await client.get("/files/data.bin", headers={"If-Match": '"nope"'})
    assert resp.status == 412
    assert (await resp.json())["status"] == 412


async def test_if_match_star_passes(client: Client) -> None:
    resp = await client.get("/files/data.bin", headers={"If-Match": "*"})
    assert resp.status == 200


async def test_if_match_is_evaluated_before_if_none_match(client: Client) -> None:
    etag = (await client.head("/files/data.bin")).headers["ETag"]
    resp = await client.get(
        "/files/data.bin", headers={"If-Match": '"other"', "If-None-Match": etag}
    )
    assert resp.status == 412


async def test_if_modified_since_last_modified_gives_304(client: Client) -> None:
    last_modified = (await client.head("/files/data.bin")).headers["Last-Modified"]
    resp = await client.get("/files/data.bin", headers={"If-Modified-Since": last_modified})
    assert resp.status == 304


async def test_if_modified_since_is_ignored_when_if_none_match_present(client: Client) -> None:
    last_modified = (await client.head("/files/data.bin")).headers["Last-Modified"]
    resp = await client.get(
        "/files/data.bin",
        headers={"If-Modified-Since": last_modified, "If-None-Match": '"other"'},
    )
    assert resp.status == 200


async def test_if_unmodified_since_in_the_past_gives_412(client: Client) -> None:
    resp = await client.get(
        "/files/data.bin", headers={"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}
    )
    assert resp.status == 412


async def test_if_range_with_current_etag_honours_range(client: Client) -> None:
    etag = (await client.head("/files/data.bin")).headers["ETag"]
    resp = await client.get("/files/data.bin", headers={"Range": "bytes=0-3", "If-Range": etag})
    assert resp.status == 206
    assert await resp.read() == DATA[:4]


async def test_if_range_with_stale_etag_sends_whole_file(client: Client) -> None:
    resp = await client.get(
        "/files/data.bin", headers={"Range": "bytes=0-3", "If-Range": '"stale"'}
    )
    assert resp.status == 200
    assert await resp.read() == DATA


async def test_if_range_with_exact_date_honours_range_and_other_date_does_not(
    client: Client,
) -> None:
    last_modified = (await client.head("/files/data.bin")).headers["Last-Modified"]
    # A date matches only once its second is over (RFC 9110 §8.8.2.2; data.bin is new).
    await asyncio.sleep(1.01 - time.time() % 1)
    exact = await client.get(
        "/files/data.bin", headers={"Range": "bytes=0-3", "If-Range": last_modified}
    )
    assert exact.status == 206
    other = await client.get(
        "/files/data.bin",
        headers={"Range": "bytes=0-3", "If-Range": "Sun, 06 Nov 1994 08:49:37 GMT"},
    )
    assert other.status == 200


async def test_missing_file_is_404_json(client: Client) -> None:
    resp = await client.get("/files/nope.bin")
    assert resp.status == 404
    assert await resp.json() == {"error": "not found", "status": 404}
    assert resp.headers["X-Request-Id"]


async def test_incoming_request_id_is_echoed_and_bad_one_replaced(client: Client) -> None:
    good = await client.get("/files/data.bin", headers={"X-Request-Id": "ci-job-42.7"})
    assert good.headers["X-Request-Id"] == "ci-job-42.7"
    bad = await client.get("/files/data.bin", headers={"X-Request-Id": "<script>"})
    assert bad.headers["X-Request-Id"] != "<script>"


async def test_unknown_method_gives_405_with_allow(client: Client) -> None:
    resp = await client.request("PATCH", "/files/data.bin")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert (await resp.json())["status"] == 405


async def test_healthz_says_ok(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.text() == "ok"

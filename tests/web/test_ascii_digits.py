"""Numbers clients send are ASCII digits (SPEC "Value formats"): `str.isdigit` also takes
superscripts (`²`, then a 500 from `int()`) and other scripts' digits (`٣` was read as 3).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import make_mocked_request

from artifactd.web.middlewares import framing_error
from tests.web.conftest import Client

NOT_ASCII = ["\u00b2", "\u0663", "\uff11", "1\u00b2"]


async def assert_json_400(response: ClientResponse, needle: str) -> None:
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["status"] == 400
    assert needle in body["error"]


@pytest.mark.parametrize("value", NOT_ASCII)
async def test_wait_must_be_ascii_digits(client: Client, value: str) -> None:
    started = time.monotonic()
    resp = await client.get("/files/absent.bin", params={"wait": value})
    await assert_json_400(resp, "wait")
    assert time.monotonic() - started < 2  # refused, not held for 3 seconds


@pytest.mark.parametrize("value", NOT_ASCII)
async def test_limit_must_be_ascii_digits(client: Client, value: str) -> None:
    resp = await client.get("/api/v1/artifacts", params={"limit": value})
    await assert_json_400(resp, "limit")


async def test_ascii_wait_and_limit_still_work(client: Client) -> None:
    assert (await client.get("/files/data.bin", params={"wait": "007"})).status == 200
    page = await client.get("/api/v1/artifacts", params={"limit": "1"})
    assert len((await page.json())["artifacts"]) == 1


@pytest.mark.parametrize("value", [*NOT_ASCII, "-1", "9" * 5000])
async def test_a_malformed_last_event_id_is_ignored_not_fatal(client: Client, value: str) -> None:
    await client.put("/files/r/1", data=b"1")
    resp = await client.get("/api/v1/events", headers={"Last-Event-ID": value})
    assert resp.status == 200
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert b"event: created" in first  # everything held is replayed, as with no id
    resp.close()


@pytest.mark.parametrize("value", NOT_ASCII)
def test_a_content_length_that_is_not_ascii_digits_is_refused(value: str) -> None:
    """Both aiohttp parsers refuse such a length first; this is the app's own check."""
    request = make_mocked_request("PUT", "/files/x", headers={"Content-Length": value})
    refused = framing_error(request)
    assert refused is not None
    assert refused.status == 400


def test_a_plain_content_length_passes() -> None:
    request = make_mocked_request("PUT", "/files/x", headers={"Content-Length": "0012"})
    assert framing_error(request) is None

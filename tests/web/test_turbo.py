"""Turborepo's remote cache API at /turbo, in-process: every endpoint, status and header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yarl

from artifactd.metrics import Metrics
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from tests.web.conftest import Auth, Client, ClientFactory, sha256_hex

HASH = "0123456789abcdef"
URL = f"/turbo/v8/artifacts/{HASH}"
TURBO_QUERY = "/turbo/v8/artifacts"
BODY = b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 8  # a zstd magic, then anything


@pytest.fixture
def tokens(storage_root: Path) -> dict[str, str]:
    store = TokenStore(storage_root)
    return {
        "read": store.add("pr-ci", "read"),
        "write": store.add("main-ci", "write", prefix="turbo/"),
        "other": store.add("other-ci", "write", prefix="myproj/"),
        "acme-read": store.add("acme-dash", "read", prefix="turbo/acme/"),
    }


@pytest.fixture
async def turbo(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    return await aiohttp_client(create_app(Settings(root=storage_root), fs_store))


async def metric(client: Client, result: str, kind: str = "turbo") -> float:
    text = await (await client.get("/metrics")).text()
    line = f'artifactd_cache_requests_total{{kind="{kind}",result="{result}"}} '
    (value,) = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
    return float(value)


async def test_put_then_get_and_head_keep_duration_and_tag(turbo: Client) -> None:
    headers = {"x-artifact-duration": "1234", "x-artifact-tag": "c2lnbmF0dXJl+/=="}
    put = await turbo.put(URL, data=BODY, headers=headers)
    assert put.status == 202
    assert await put.json() == {"urls": [f"/files/turbo/default/{HASH}"]}
    get = await turbo.get(URL)
    assert get.status == 200
    assert await get.read() == BODY
    assert get.headers["Content-Type"] == "application/octet-stream"
    assert get.headers["x-artifact-duration"] == "1234"
    assert get.headers["x-artifact-tag"] == "c2lnbmF0dXJl+/=="
    head = await turbo.head(URL)
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(BODY))
    assert head.headers["x-artifact-duration"] == "1234"
    assert head.headers["x-artifact-tag"] == "c2lnbmF0dXJl+/=="


async def test_an_entry_is_an_ordinary_artifact(turbo: Client) -> None:
    await turbo.put(URL + "?slug=acme", data=BODY)
    plain = await turbo.get(f"/files/turbo/acme/{HASH}")
    assert await plain.read() == BODY
    document = await (await turbo.get(f"/api/v1/artifacts/turbo/acme/{HASH}")).json()
    assert document["sha256"] == sha256_hex(BODY)
    listed = await (await turbo.get("/api/v1/artifacts?prefix=turbo/")).json()
    assert [a["path"] for a in listed["artifacts"]] == [f"turbo/acme/{HASH}"]


async def test_without_tag_get_sends_duration_only(turbo: Client) -> None:
    await turbo.put(URL, data=BODY)
    get = await turbo.get(URL)
    assert get.headers["x-artifact-duration"] == "0"
    assert "x-artifact-tag" not in get.headers


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("", "turbo/default"),
        ("?teamId=team_abc", "turbo/team_abc"),
        ("?slug=acme", "turbo/acme"),
        ("?teamId=team_abc&slug=acme", "turbo/team_abc"),
    ],
)
async def test_team_from_team_id_then_slug_else_default(
    turbo: Client, query: str, stored: str
) -> None:
    assert (await turbo.put(URL + query, data=BODY)).status == 202
    assert (await turbo.get(f"/files/{stored}/{HASH}")).status == 200
    assert (await turbo.get(URL + query)).status == 200


async def test_a_miss_is_404_in_turborepo_shape(turbo: Client) -> None:
    for method in ("GET", "HEAD"):
        response = await turbo.request(method, URL)
        assert response.status == 404
    body = await (await turbo.get(URL)).json()
    assert body["error"]["code"] == "not_found"
    assert isinstance(body["error"]["message"], str)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/turbo/v8/artifacts/not-hex", 400),
        ("/turbo/v8/artifacts/..", 404),  # the dot segment is resolved: /turbo/v8/
        ("/turbo/v8/artifacts/%2e%2e", 400),
        (f"/turbo/v8/artifacts/{HASH}?slug=..", 400),
        (f"/turbo/v8/artifacts/{HASH}?slug=.artifactd", 400),
        (f"/turbo/v8/artifacts/{HASH}?teamId=a%2Fb", 400),
        ("/turbo/v8/artifacts/" + "a" * 129, 400),
    ],
)
async def test_unsafe_hash_or_team_is_refused(turbo: Client, url: str, status: int) -> None:
    for method in ("GET", "PUT"):
        data = b"x" if method == "PUT" else None
        response = await turbo.request(method, yarl.URL(url, encoded=True), data=data)
        assert response.status == status, url
        body = await response.json()
        assert set(body["error"]) == {"code", "message"}
    listed = await (await turbo.get("/api/v1/artifacts")).json()
    assert listed["artifacts"] == []


async def test_bad_duration_or_tag_is_400(turbo: Client) -> None:
    for headers in ({"x-artifact-duration": "soon"}, {"x-artifact-tag": 'a"; x=1'}):
        response = await turbo.put(URL, data=BODY, headers=headers)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"
    assert (await turbo.get(URL)).status == 404


async def test_status_endpoint(turbo: Client) -> None:
    response = await turbo.get("/turbo/v8/artifacts/status?slug=acme")
    assert response.status == 200
    assert await response.json() == {"status": "enabled"}


async def test_events_are_accepted(turbo: Client) -> None:
    events = [{"sessionId": "s", "source": "REMOTE", "event": "HIT", "hash": HASH, "duration": 5}]
    response = await turbo.post("/turbo/v8/artifacts/events", json=events)
    assert response.status == 200
    assert await response.json() == {}
    bad = await turbo.post("/turbo/v8/artifacts/events", data=b"{nope")
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "bad_request"


async def test_batch_query(turbo: Client) -> None:
    await turbo.put(URL, data=BODY, headers={"x-artifact-duration": "77", "x-artifact-tag": "t"})
    missing = "fedcba9876543210"
    response = await turbo.post("/turbo/v8/artifacts", json={"hashes": [HASH, missing]})
    assert response.status == 200
    assert await response.json() == {
        HASH: {"size": len(BODY), "taskDurationMs": 77, "tag": "t"},
        missing: None,
    }
    bad_bodies: list[object] = [{"hashes": "x"}, {"hashes": [1]}, [], {"hashes": ["../x"]}]
    for bad in bad_bodies:
        refused = await turbo.post("/turbo/v8/artifacts", json=bad)
        assert refused.status == 400, bad


async def test_a_wrong_method_is_405_in_turborepo_shape(turbo: Client) -> None:
    response = await turbo.delete(URL)
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_digest_mismatch_stores_nothing(turbo: Client) -> None:
    response = await turbo.put(URL, data=BODY, headers={"X-Checksum-Sha256": "0" * 64})
    assert response.status == 400
    assert (await turbo.get(URL)).status == 404


async def test_immutable_server_refuses_overwrite_with_409(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    client = await aiohttp_client(create_app(Settings(root=storage_root, immutable=True), fs_store))
    assert (await client.put(URL, data=BODY)).status == 202
    again = await client.put(URL, data=b"other")
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "conflict"


async def test_metrics_count_hits_misses_and_writes(turbo: Client) -> None:
    assert await metric(turbo, "hit", "nx") == 0
    await turbo.get(URL)
    await turbo.put(URL, data=BODY)
    await turbo.get(URL)
    await turbo.get(URL)
    await turbo.head(URL)  # an existence check, not a lookup
    assert await metric(turbo, "miss") == 1
    assert await metric(turbo, "write") == 1
    assert await metric(turbo, "hit") == 2


async def test_tokens_read_token_reads_and_queries_but_cannot_write(
    turbo: Client, tokens: dict[str, str], auth: Auth
) -> None:
    read = auth(tokens["read"])
    refused = await turbo.put(URL, data=BODY, headers=read)
    assert refused.status == 403
    error = (await refused.json())["error"]
    assert error["code"] == "forbidden"
    assert "write" in error["message"]
    assert (await turbo.put(URL, data=BODY, headers=auth(tokens["write"]))).status == 202
    assert (await turbo.get(URL, headers=read)).status == 200
    assert (await turbo.head(URL, headers=read)).status == 200
    query = await turbo.post("/turbo/v8/artifacts", json={"hashes": [HASH]}, headers=read)
    assert query.status == 200
    events = await turbo.post("/turbo/v8/artifacts/events", json=[], headers=read)
    assert events.status == 200
    assert (await turbo.get("/turbo/v8/artifacts/status", headers=read)).status == 200


async def test_tokens_missing_or_bad_is_401_in_turborepo_shape(
    turbo: Client, tokens: dict[str, str], auth: Auth
) -> None:
    missing = await turbo.put(URL, data=BODY)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await missing.json())["error"]["code"] == "unauthorized"
    bad = await turbo.put(URL, data=BODY, headers=auth("nope"))
    assert bad.status == 401
    scheme = auth("nope")["Authorization"].split()[0]  # a Basic challenge where Basic was sent
    assert bad.headers.getall("WWW-Authenticate")[-1].startswith(scheme)
    assert (await bad.json())["error"]["code"] == "unauthorized"
    query = await turbo.post("/turbo/v8/artifacts", json={"hashes": []}, headers=auth("nope"))
    assert query.status == 200  # reads are public without --private


async def test_tokens_prefix_limits_teams(
    turbo: Client, tokens: dict[str, str], auth: Auth
) -> None:
    other = await turbo.put(URL, data=BODY, headers=auth(tokens["other"]))
    assert other.status == 403
    assert set((await other.json())["error"]) == {"code", "message"}
    assert (await turbo.get(URL)).status == 404
    writer = auth(tokens["write"])  # limited to turbo/
    assert (await turbo.put(URL + "?slug=acme", data=BODY, headers=writer)).status == 202


async def test_expect_continue_refusal_is_in_turborepo_shape(
    turbo: Client, tokens: dict[str, str], auth: Auth
) -> None:
    response = await turbo.put(
        URL, data=BODY, headers={**auth(tokens["read"]), "Expect": "100-continue"}
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


async def test_private_server_needs_a_read_token(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    tokens: dict[str, str],
    auth: Auth,
) -> None:
    client = await aiohttp_client(create_app(Settings(root=storage_root, private=True), fs_store))
    assert (await client.get(URL)).status == 401
    assert (await client.post("/turbo/v8/artifacts", json={"hashes": []})).status == 401
    status = await client.get("/turbo/v8/artifacts/status", headers=auth(tokens["read"]))
    assert json.loads(await status.text()) == {"status": "enabled"}
    assert (await client.get(URL, headers=auth(tokens["read"]))).status == 404


async def test_unknown_routes_and_rate_limits_answer_in_turborepo_shape(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    settings = Settings(root=storage_root, rate_limit="2/min")
    client = await aiohttp_client(create_app(settings, fs_store))
    unknown = await client.get("/turbo/v9/artifacts")
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "not_found"
    await client.get(URL)
    limited = await client.get(URL)
    assert limited.status == 429
    assert "Retry-After" in limited.headers
    assert (await limited.json())["error"]["code"] == "rate_limited"
    plain = await client.get("/files/x")
    assert plain.status == 429
    assert (await plain.json())["status"] == 429  # /files/ keeps its own shape


async def test_a_prefixed_read_token_reads_only_its_team_on_a_private_server(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    tokens: dict[str, str],
    auth: Auth,
) -> None:
    client = await aiohttp_client(create_app(Settings(root=storage_root, private=True), fs_store))
    acme = auth(tokens["acme-read"])
    query = {"hashes": [HASH]}
    assert (await client.post(TURBO_QUERY + "?slug=acme", json=query, headers=acme)).status == 200
    assert (await client.post(TURBO_QUERY + "?slug=other", json=query, headers=acme)).status == 403
    assert (await client.get(URL + "?slug=other", headers=acme)).status == 403
    assert (await client.get(URL + "?slug=acme", headers=acme)).status == 404


def test_cache_metric_labels_are_a_closed_set() -> None:
    metrics = Metrics()
    metrics.count_cache("turbo", "hit")
    with pytest.raises(ValueError, match="no cache metric"):
        metrics.count_cache("webdav", "hit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no cache metric"):
        metrics.count_cache("nx", "evicted")  # type: ignore[arg-type]

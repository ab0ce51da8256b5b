"""artifactd_cache_requests_total and artifactd_cache_bytes_total for /files/ clients (by
User-Agent) and the cache APIs, in-process."""

from __future__ import annotations

from tests.web.conftest import Client

CCACHE = {"User-Agent": "ccache/4.10.2"}
GRADLE = {"User-Agent": "Gradle/4.4.1 (Linux;6.1;amd64) (Debian;17.0.15;17.0.15+6)"}
BODY = b"x" * 1000


async def samples(client: Client) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines())
        if name.startswith("artifactd_cache_")
    }


def requests(kind: str, result: str) -> str:
    return f'artifactd_cache_requests_total{{kind="{kind}",result="{result}"}}'


def cache_bytes(kind: str, direction: str) -> str:
    return f'artifactd_cache_bytes_total{{direction="{direction}",kind="{kind}"}}'


async def test_every_kind_is_exported_at_zero(client: Client) -> None:
    found = await samples(client)
    for kind in ("ccache", "bazel", "gradle", "sccache", "turbo", "nx", "other"):
        for result in ("hit", "miss", "write"):
            assert found[requests(kind, result)] == 0
        for direction in ("read", "written"):
            assert found[cache_bytes(kind, direction)] == 0


async def test_files_requests_count_under_their_user_agent(client: Client) -> None:
    url = "/files/ccache/ab/cdef"
    assert (await client.get(url, headers=CCACHE)).status == 404
    assert (await client.put(url, data=BODY, headers=CCACHE)).status == 201
    assert (await client.head(url, headers=CCACHE)).status == 200  # no lookup
    assert (await client.get(url, headers=CCACHE)).status == 200
    assert (await client.get(url, headers=GRADLE)).status == 200
    assert (await client.get(url)).status == 200  # aiohttp's own User-Agent
    found = await samples(client)
    assert found[requests("ccache", "miss")] == 1
    assert found[requests("ccache", "write")] == 1
    assert found[requests("ccache", "hit")] == 1
    assert found[cache_bytes("ccache", "written")] == len(BODY)
    assert found[cache_bytes("ccache", "read")] == len(BODY)
    assert found[requests("gradle", "hit")] == 1
    assert found[cache_bytes("gradle", "read")] == len(BODY)
    assert found[requests("other", "hit")] == 1


async def test_cache_api_bytes(client: Client) -> None:
    url = "/nx/v1/cache/12345"
    assert (await client.put(url, data=BODY, headers={"Content-Length": "1000"})).status == 202
    assert (await client.get(url)).status == 200
    found = await samples(client)
    assert found[requests("nx", "write")] == 1
    assert found[cache_bytes("nx", "written")] == len(BODY)
    assert found[requests("nx", "hit")] == 1
    assert found[cache_bytes("nx", "read")] == len(BODY)
    assert found[requests("other", "write")] == 0  # the API's entry, not a /files/ PUT

"""Download and listing edges, in-process: Vary on listings, stale `.gz` siblings,
If-Range dates of versions changed within a second, digests asked for with Want-Digest
and Want-Repr-Digest, Content-Disposition for names a URL cannot carry as they are."""

from __future__ import annotations

from tests.web.conftest import Client


async def test_listings_vary_on_accept_whichever_form_they_answer(client: Client) -> None:
    for headers in ({"Accept": "text/html"}, {"Accept": "application/json"}, {}):
        resp = await client.get("/files/docs/", headers=headers)
        assert resp.status == 200
        assert "Accept" in [v.strip() for v in resp.headers["Vary"].split(",")]
    by_query = await client.get("/files/?format=json")
    assert "Accept" in by_query.headers["Vary"]

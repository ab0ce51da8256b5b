"""A page of the artifacts API deep in an S3 bucket costs what that page holds, not what
lies before its cursor: the listing starts after the cursor (ListObjectsV2 StartAfter), so
the keys before it are neither listed nor described (HEAD) again. Against a real SeaweedFS."""

from __future__ import annotations

from typing import Any

from artifactd.store.s3 import S3Store
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)

STORED = 40


class ListedKeys:
    """Keys each ListObjectsV2 answer held, and HEADs sent, for one store."""

    def __init__(self, store: S3Store) -> None:
        self.heads = 0
        self.listed = 0
        events = store.bucket.client.meta.events
        events.register("before-send.s3.HeadObject", self._head)
        events.register("after-call.s3.ListObjectsV2", self._listing)

    def _head(self, **_: Any) -> None:
        self.heads += 1

    def _listing(self, parsed: dict[str, Any], **_: Any) -> None:
        self.listed += len(parsed.get("Contents", []))


async def test_a_page_after_a_cursor_lists_and_describes_only_what_follows(
    seaweed: Seaweed, s3_bucket: str
) -> None:
    writer = await open_s3_store(seaweed, s3_bucket)
    try:
        for i in range(STORED):
            upload = await writer.begin_upload(f"deep/{i:03d}.bin")
            await upload.write(b"x")
            await upload.commit()
    finally:
        await writer.close()

    # Another node, with nothing described yet: what the page costs it is what it sends.
    reader = await open_s3_store(seaweed, s3_bucket)
    try:
        seen = ListedKeys(reader)
        found = [info.path async for info in reader.iter_artifacts("deep/", after="deep/034.bin")]
        assert found == [f"deep/{i:03d}.bin" for i in range(35, STORED)]
        assert (seen.listed, seen.heads) == (5, 5)
    finally:
        await reader.close()

"""POST multipart/form-data at its edges: every malformed form is a 400 JSON error that
stores nothing, and a part is stored only once its closing boundary arrived."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from artifactd.web.uploads import MAX_FORM_FILES
from tests.web.conftest import Client, ClientFactory

BOUNDARY = "xYzZY"
OLD = b"old version\n"


def part(headers: list[str], body: bytes, boundary: str = BOUNDARY) -> bytes:
    head = "".join(f"{line}\r\n" for line in headers).encode()
    return f"--{boundary}\r\n".encode() + head + b"\r\n" + body + b"\r\n"


def file_part(name: str, body: bytes, *extra: str) -> bytes:
    return part([f'Content-Disposition: form-data; name="file"; filename="{name}"', *extra], body)


def close(boundary: str = BOUNDARY) -> bytes:
    return f"--{boundary}--\r\n".encode()


GOOD = file_part("a.txt", b"new version\n") + close()
TTL = 'Content-Disposition: form-data; name="ttl"'

# (id, Content-Type, body)
MALFORMED: list[tuple[str, str, bytes]] = [
    ("no-boundary", "multipart/form-data", GOOD),
    ("empty-boundary", 'multipart/form-data; boundary=""', GOOD),
    ("bare-empty-boundary", "multipart/form-data; boundary=", GOOD),
    ("boundary-over-70", "multipart/form-data; boundary=" + "b" * 71, GOOD),
    ("boundary-bad-char", 'multipart/form-data; boundary="a\\"b"', GOOD),
    ("wrong-starting-boundary", "multipart/form-data; boundary=other", GOOD),
    ("missing-starting-boundary", "", GOOD[len(f"--{BOUNDARY}\r\n") :]),
    ("empty-body", "", b""),
    ("no-closing-boundary", "", file_part("a.txt", b"truncated")[:-2]),
    ("part-cut-after-crlf", "", file_part("a.txt", b"truncated")),
    ("headers-never-ended", "", f"--{BOUNDARY}\r\n{TTL}\r\n".encode()),
    ("headers-cut-mid-line", "", f"--{BOUNDARY}\r\nContent-Disp".encode()),
    (
        "delimiter-then-text",
        "",
        file_part("a.txt", b"complete")[:-2] + f"\r\n--{BOUNDARY}z\r\n".encode() + close(),
    ),
    ("delimiter-then-eof", "", file_part("a.txt", b"complete") + f"--{BOUNDARY}".encode()),
    ("next-part-never-came", "", file_part("a.txt", b"complete") + f"--{BOUNDARY}\r\n".encode()),
    (
        "nested-multipart",
        "",
        part(
            [
                'Content-Disposition: form-data; name="file"; filename="a.txt"',
                "Content-Type: multipart/mixed; boundary=inner",
            ],
            b"--inner\r\n\r\nx\r\n--inner--",
        )
        + close(),
    ),
    ("ttl-charset-foo", "", part([TTL, "Content-Type: text/plain; charset=foo"], b"1d") + GOOD),
    ("ttl-invalid-utf8", "", part([TTL], b"\xff\xfe1d") + GOOD),
    ("ttl-not-a-duration", "", part([TTL], b"soon") + GOOD),
    (
        "filename-with-nul",
        "",
        part(['Content-Disposition: form-data; name="file"; filename="a\x00.txt"'], b"x") + close(),
    ),
    ("header-line-too-long", "", file_part("a.txt", b"x", "X-Long: " + "a" * 9000) + close()),
    ("header-without-colon", "", file_part("a.txt", b"x", "no colon here") + close()),
    ("folded-header", "", file_part("a.txt", b"x", "X-A: 1", " folded") + close()),
    (
        "too-many-headers",
        "",
        file_part("a.txt", b"x", *[f"X-H{i}: v" for i in range(100)]) + close(),
    ),
    ("no-content-disposition", "", part(["Content-Type: text/plain"], b"x") + GOOD),
    (
        "not-form-data",
        "",
        part(['Content-Disposition: attachment; filename="a.txt"'], b"x") + close(),
    ),
    (
        "filename-invalid-utf8",
        "",
        part([], b"x")[: -len(b"\r\nx\r\n")]
        + b'Content-Disposition: form-data; name="file"; filename="\xff.txt"\r\n\r\nx\r\n'
        + close(),
    ),
]


async def post(client: Client, content_type: str, body: bytes) -> tuple[int, object]:
    content_type = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    response = await client.post(
        "/files/up/",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    text = await response.text()
    assert response.headers["Content-Type"].startswith("application/json"), text
    return response.status, json.loads(text)


@pytest.mark.parametrize(
    ("content_type", "body"), [pytest.param(c, b, id=name) for name, c, b in MALFORMED]
)
async def test_a_malformed_form_is_400_and_stores_nothing(
    client: Client, content_type: str, body: bytes
) -> None:
    assert (await client.put("/files/up/a.txt", data=OLD)).status == 201
    status, document = await post(client, content_type, body)
    assert status == 400, document
    assert isinstance(document, dict) and set(document) == {"error", "status"}
    assert document["status"] == 400
    assert await (await client.get("/files/up/a.txt")).read() == OLD
    listing = await (await client.get("/files/up/", headers={"Accept": "application/json"})).json()
    assert [e["name"] for e in listing["entries"]] == ["a.txt"]


async def test_a_complete_part_before_a_malformed_one_is_not_stored(client: Client) -> None:
    body = file_part("b.txt", b"first") + file_part("a.txt", b"second")[:-2]
    assert (await client.put("/files/up/a.txt", data=OLD)).status == 201
    status, _ = await post(client, "", body)
    assert status == 400
    assert (await client.get("/files/up/b.txt")).status == 404
    assert await (await client.get("/files/up/a.txt")).read() == OLD


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(GOOD, id="plain"),
        pytest.param(b"preamble\r\n" + GOOD + b"epilogue", id="preamble-and-epilogue"),
        pytest.param(GOOD[:-2], id="close-without-crlf"),
        pytest.param(
            GOOD.replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY} \t\r\n".encode(), 1),
            id="transport-padding",
        ),
        pytest.param(
            part([TTL, "Content-Type: text/plain; charset=UTF-8"], b" 1d ") + GOOD,
            id="ttl-utf8",
        ),
        pytest.param(
            part(['Content-Disposition: form-data; name="file"; filename=""'], b"") + GOOD,
            id="empty-file-input",
        ),
    ],
)
async def test_well_formed_forms_are_stored(client: Client, body: bytes) -> None:
    status, document = await post(client, "", body)
    assert status == 201, document
    assert await (await client.get("/files/up/a.txt")).read() == b"new version\n"


async def test_a_part_body_holding_boundary_lookalikes_is_kept_whole(client: Client) -> None:
    tricky = b"x\r\n--xYzZ\r\n-" + b"--xYzZY" + b"\r\n--\r\n--xYzZ"
    status, document = await post(client, "", file_part("t.bin", tricky) + close())
    assert status == 201, document
    assert await (await client.get("/files/up/t.bin")).read() == tricky


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_a_stalled_body_times_out_for_put_and_post_alike(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path, method: str
) -> None:
    client = await aiohttp_client(
        create_app(Settings(root=storage_root, body_timeout=0.5), fs_store)
    )
    target = "/files/up/a.txt" if method == "PUT" else "/files/up/"
    sent = file_part("a.txt", b"the start of a long file")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(sent) + 1000}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
        + sent
    )
    await writer.drain()
    started = time.monotonic()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert time.monotonic() - started < 5
    writer.close()
    assert status_line.split(b" ")[1] == b"400"
    assert (await client.get("/files/up/a.txt")).status == 404


async def test_a_form_with_too_many_files_is_400_and_stores_nothing(client: Client) -> None:
    files = [file_part(f"f{i}.txt", b"x") for i in range(MAX_FORM_FILES + 1)]
    status, document = await post(client, "", b"".join(files) + close())
    assert status == 400, document
    listing = await client.get("/files/up/", headers={"Accept": "application/json"})
    assert listing.status == 404
    status, document = await post(client, "", b"".join(files[:MAX_FORM_FILES]) + close())
    assert status == 201, document


async def test_a_form_naming_a_directory_is_409_and_stores_nothing(client: Client) -> None:
    """A file part whose name is a directory refuses the whole form before any part is
    stored, although the store finds directories only when a temp file is made."""
    assert (await client.put("/files/up/d/inner.txt", data=OLD)).status == 201
    body = file_part("b.txt", b"first") + file_part("d", b"onto a directory") + close()
    status, document = await post(client, "", body)
    assert status == 409, document
    assert (await client.get("/files/up/b.txt")).status == 404
    assert await (await client.get("/files/up/d/inner.txt")).read() == OLD

"""Malformed multipart forms, stalled form bodies, Expect and method mistakes against a real
server process, with aiohttp's C and pure-Python parsers (as tests/process/test_hostile.py).

Every malformed form is artifactd's own 400 JSON error, never a 500 or a traceback, and
leaves the stored version as it was."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifactd.tokens import TokenStore
from artifactd.web.routes import FILE_METHODS
from tests.process.test_hostile import (
    BODY_TIMEOUT,
    PARSERS,
    VICTIM,
    Site,
    assert_refused,
    assert_still_serving,
    build_site,
    exchange,
    read_answer,
    request,
)
from tests.serverproc import ServerProcess
from tests.web.test_multipart_edges import BOUNDARY, MALFORMED, file_part

pytestmark = pytest.mark.allow_blocking

FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture(scope="module", params=sorted(PARSERS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    parser = str(request.param)
    base = tmp_path_factory.mktemp(f"forms-{parser}")
    root, secret, canary = build_site(base)
    server = ServerProcess(
        root, "--body-timeout", f"{BODY_TIMEOUT}s", "--rate-limit", "1000/s", env=PARSERS[parser]
    )
    st = secret.stat()
    try:
        yield Site(server, parser, base, root, secret, canary, (st.st_size, st.st_mtime_ns))
    finally:
        server.terminate()
    assert "Traceback" not in server.stderr(), server.stderr()[-5000:]


@pytest.mark.parametrize(
    ("content_type", "body"), [pytest.param(c, b, id=name) for name, c, b in MALFORMED]
)
def test_a_malformed_form_is_a_json_400_and_stores_nothing(
    site: Site, content_type: str, body: bytes
) -> None:
    # The forms name their file a.txt: posted into dir/, it would replace dir/a.txt's copy of
    # the victim put there first.
    directory = f"/files/forms/{uuid.uuid4().hex}/"
    put = exchange(site.server.port, request("PUT", directory + "a.txt", body=VICTIM))
    assert put.status == 201
    raw = request("POST", directory, f"Content-Type: {content_type or FORM_TYPE}", body=body)
    if not body:
        raw = request("POST", directory, f"Content-Type: {FORM_TYPE}", "Content-Length: 0")
    assert_refused(exchange(site.server.port, raw), 400)
    kept = exchange(site.server.port, request("GET", directory + "a.txt"))
    assert (kept.status, kept.body) == (200, VICTIM)
    assert_still_serving(site)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_stalled_form_body_times_out(site: Site, chunked: bool) -> None:
    sent = file_part("slow.txt", b"the start of a long file")
    framing = ["Transfer-Encoding: chunked"] if chunked else [f"Content-Length: {len(sent) + 1000}"]
    body = f"{len(sent):x}\r\n".encode() + sent + b"\r\n" if chunked else sent
    directory = f"/files/forms/{uuid.uuid4().hex}/"
    with socket.create_connection(("127.0.0.1", site.server.port)) as sock:
        sock.sendall(request("POST", directory, f"Content-Type: {FORM_TYPE}", *framing) + body)
        started = time.monotonic()
        answer = read_answer(sock, timeout=BODY_TIMEOUT + 10)
    assert time.monotonic() - started < BODY_TIMEOUT + 5
    assert_refused(answer, 400)
    assert exchange(site.server.port, request("GET", directory + "slow.txt")).status == 404


def test_post_to_a_file_url_is_405_with_allow(site: Site) -> None:
    body = file_part("x.txt", b"x") + f"--{BOUNDARY}--\r\n".encode()
    answer = exchange(
        site.server.port,
        request("POST", "/files/victim.bin", f"Content-Type: {FORM_TYPE}", body=body),
    )
    assert_refused(answer, 405)
    assert {m.strip() for m in answer.headers["allow"].split(",")} == FILE_METHODS
    victim = exchange(site.server.port, request("GET", "/files/victim.bin"))
    assert (victim.status, victim.body) == (200, VICTIM)


def test_expect_guesses_hit_the_rate_limit(tmp_path: Path) -> None:
    """With `--rate-limit 3/min` and a token configured, guessing tokens with `Expect:
    100-continue` gets 429 after three tries, before any body is sent."""
    root, _, _ = build_site(tmp_path)
    TokenStore(root).add("ci", "write")
    server = ServerProcess(root, "--rate-limit", "3/min")
    try:
        statuses = []
        for i in range(5):
            head = request(
                "PUT",
                "/files/guess.bin",
                f"Authorization: Bearer adt_guess{i}",
                "Content-Length: 4",
                "Expect: 100-continue",
            )
            statuses.append(exchange(server.port, head).status)
        assert statuses == [401, 401, 401, 429, 429]
    finally:
        server.terminate()
    assert "Traceback" not in server.stderr()

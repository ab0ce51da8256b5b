"""Schemathesis against a real server: every operation of `/api/v1/openapi.json`, with
examples generated from the description, never answers 5xx and answers JSON as described.

Bounded (a few hundred requests in all); the event stream, which never ends, is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from artifactd.web.openapi import openapi_document
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def schemathesis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    (root / "dir").mkdir()
    (root / "dir" / "a.txt").write_bytes(b"hello\n" * 300)
    server = ServerProcess(root, "--body-timeout", "2s")
    try:
        yield server
    finally:
        server.terminate()
    assert "Traceback" not in server.stderr(), server.stderr()[-5000:]
    # The examples did reach the server (about 470 requests).
    assert sum(" rid=" in line for line in server.stderr_lines) > 200


# tus pieces (`/uploads/`) are bytes, as `application/octet-stream` bodies are.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

# The document the server serves (built in Python: loaded without a server at collection).
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path="/api/v1/events")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_json_as_described(
    case: schemathesis.Case[Any], schemathesis_server: ServerProcess
) -> None:
    case.call_and_validate(
        base_url=schemathesis_server.url,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=30,
    )

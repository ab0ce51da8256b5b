"""The gunicorn entry points harden their process like `artifactd serve` does, and
`serve_app` hands gunicorn the runner `serve` uses."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from artifactd.app import create_app, serve_app
from artifactd.hardening import MAX_HEADER_FIELD_BYTES, OneLineParserErrors
from artifactd.runner import ArtifactRunner, InFlightRequests
from artifactd.settings import Settings
from artifactd.store.memory import MemoryStore
from artifactd.web.keys import SETTINGS


def test_create_app_for_gunicorn_hardens_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "get_int_max_str_digits", lambda: 4300)
    raised: list[int] = []
    monkeypatch.setattr(sys, "set_int_max_str_digits", raised.append)
    protocol_log = logging.getLogger("aiohttp.server")
    monkeypatch.setattr(protocol_log, "filters", [])

    app = create_app(Settings(root=tmp_path), MemoryStore())

    assert app is not None
    assert raised == [MAX_HEADER_FIELD_BYTES]
    assert any(isinstance(f, OneLineParserErrors) for f in protocol_log.filters)


async def test_serve_app_gives_gunicorn_the_runner_serve_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTD_ROOT", str(tmp_path))
    monkeypatch.setenv("ARTIFACTD_KEEPALIVE_TIMEOUT", "0")
    monkeypatch.setenv("ARTIFACTD_BODY_TIMEOUT", "7")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a gunicorn worker without --log-config
    monkeypatch.setattr(root, "level", root.level)

    runner = await serve_app()

    assert isinstance(runner, ArtifactRunner)
    assert runner.app[SETTINGS].root == tmp_path
    await runner.setup()
    try:
        assert runner.server is not None
        assert isinstance(runner.server.request_handler, InFlightRequests)
        # The head deadline: --body-timeout when keep-alive is off (aiohttp's worker would
        # have taken gunicorn's --keep-alive).
        assert runner.server._kwargs["keepalive_timeout"] == 7
        assert runner.server._kwargs["max_field_size"] == MAX_HEADER_FIELD_BYTES
    finally:
        await runner.cleanup()
    assert len(root.handlers) == 1  # serve's logging, since nothing else configured any

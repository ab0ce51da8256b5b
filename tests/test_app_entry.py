"""The gunicorn entry point hardens its process like `artifactd serve` does."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from artifactd.app import create_app
from artifactd.hardening import MAX_HEADER_FIELD_BYTES, OneLineParserErrors
from artifactd.settings import Settings
from artifactd.store.memory import MemoryStore


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

"""The access log's text line quotes a client's strings so that none can end its field or
forge a line."""

from __future__ import annotations

import pytest

from artifactd.web.pipeline import log_quoted


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("curl/8.5.0", "curl/8.5.0"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\tb", "a\\x09b"),
        ("line\r\nforged 200", "line\\x0d\\x0aforged 200"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x7f", "\\x7f"),
        ("ü", "\\xfc"),
        ("€", "\\u20ac"),
        ("\udcff", "\\udcff"),  # an undecodable byte as aiohttp's parser hands it over
    ],
)
def test_escapes(value: str, logged: str) -> None:
    assert log_quoted(value) == logged


@pytest.mark.parametrize("value", ['"', "\\", "\n", "\x00", "ü", 'x" y="z'])
def test_a_quoted_value_never_holds_a_bare_quote_or_a_control(value: str) -> None:
    quoted = log_quoted(value)
    assert quoted.isascii() and quoted.isprintable()
    assert '"' not in quoted.replace('\\"', "")

"""Content-Disposition (RFC 6266, RFC 8187) for names a URL cannot carry as they are."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.http.disposition import content_disposition


@pytest.mark.parametrize("path", ["app.tar.gz", "dir/v1.2_x~y-z", "a/b/README"])
def test_plain_names_need_none(path: str) -> None:
    assert content_disposition(path) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a b.txt", "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"),
        ("dir/café.txt", "attachment; filename=\"cafe.txt\"; filename*=UTF-8''caf%C3%A9.txt"),
        (
            "данные.csv",
            'attachment; filename="______.csv"; '
            "filename*=UTF-8''%D0%B4%D0%B0%D0%BD%D0%BD%D1%8B%D0%B5.csv",
        ),
        ("a+b.txt", "attachment; filename=\"a+b.txt\"; filename*=UTF-8''a+b.txt"),
        (
            'q"uo\\te%41.txt',
            "attachment; filename=\"q_uo_te_41.txt\"; filename*=UTF-8''q%22uo%5Cte%2541.txt",
        ),
        ("semi;colon", "attachment; filename=\"semi;colon\"; filename*=UTF-8''semi%3Bcolon"),
    ],
)
def test_other_names_get_a_fallback_and_an_encoded_name(path: str, expected: str) -> None:
    assert content_disposition(path) == expected


@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1).filter(lambda n: "/" not in n))
def test_every_name_comes_back_whole_from_filename_star(name: str) -> None:
    """What a recipient following RFC 6266 reads back is the name itself, and the header
    is a valid ASCII field value."""
    value = content_disposition(name)
    if value is None:
        return
    assert value.isascii() and value.isprintable()
    match = re.fullmatch(r'attachment; filename="([ !#-\[\]-~]*)"; filename\*=UTF-8\'\'(.+)', value)
    assert match is not None, value
    assert re.fullmatch(r"(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})+", match[2])  # RFC 8187
    assert unquote(match[2], errors="strict") == name

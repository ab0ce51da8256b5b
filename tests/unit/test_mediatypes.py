"""guess_content_type answers, for any name, what mimetypes itself would (its cache keyed by
the extensions changes nothing)."""

from __future__ import annotations

import random

import pytest

from artifactd.http import mediatypes
from artifactd.http.mediatypes import DEFAULT_CONTENT_TYPE, guess_content_type

FIXED = [
    "a.tar.gz", "x.TXT", "Makefile", ".bashrc", ".tar.gz", "data:abc,def", "data:x.tar",
    "a.b.c.json", "f.", "a..gz", "q.log", "k.bin", "w.tar.bz2.xz", "é.html", "a.Z", "a.tgz",
]  # fmt: skip


def uncached(name: str) -> str:
    media_type, encoding = mediatypes._db.guess_type(name, strict=False)
    if encoding is not None:
        return mediatypes._ENCODING_TYPES.get(encoding, DEFAULT_CONTENT_TYPE)
    return media_type or DEFAULT_CONTENT_TYPE


@pytest.mark.parametrize("directory", ["", "some/dir/"])
def test_the_cached_guess_is_the_mimetypes_guess_for_every_name(directory: str) -> None:
    rnd = random.Random(7)
    names = FIXED + [
        "".join(rnd.choice("ab.:,gzjsontarxZ") for _ in range(rnd.randrange(1, 10)))
        for _ in range(3000)
    ]
    for _ in range(2):  # the second time from the cache
        for name in names:
            assert guess_content_type(directory + name) == uncached(name), name
    assert guess_content_type("k/00/000001.bin") == guess_content_type("k/01/000002.bin")


@pytest.mark.parametrize("name", ["p-1-123", "dir/e3b0c44298fc1c149afbf4c8996fb924", "Makefile"])
def test_a_name_without_a_dot_or_a_colon_is_octet_stream_without_asking_mimetypes(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cache keys (content hashes) have no extension: their guess costs no table lookup."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("mimetypes asked")

    monkeypatch.setattr(mediatypes._db, "guess_type", refuse)
    assert guess_content_type(name) == DEFAULT_CONTENT_TYPE

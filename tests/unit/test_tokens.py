"""The token store (hashes only, atomic 0600 file, reloads, corruption) and `artifactd token`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from artifactd.cli.tokens import token
from artifactd.errors import ArtifactdError, InvalidValueError
from artifactd.tokens import (
    DuplicateTokenError,
    TokenFileError,
    TokenInfo,
    TokenStore,
)


@pytest.fixture
def store(storage_root: Path) -> TokenStore:
    return TokenStore(storage_root)


def tokens_file(root: Path) -> Path:
    return root / ".artifactd" / "tokens.json"


def test_add_returns_a_random_recognisable_token_and_stores_only_its_hash(
    store: TokenStore, storage_root: Path
) -> None:
    first = store.add("ci", "write")
    second = store.add("ci2", "write")
    assert first.startswith("adt_") and second.startswith("adt_")
    assert first != second
    assert len(first) >= 4 + 43  # 32 random bytes, base64url
    text = tokens_file(storage_root).read_text()
    assert first not in text and second not in text
    assert hashlib.sha256(first.encode()).hexdigest() in text


def test_tokens_file_is_private_to_the_owner(store: TokenStore, storage_root: Path) -> None:
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        store.add("ci", "read")
    finally:
        os.umask(old_umask)
    mode = stat.S_IMODE(tokens_file(storage_root).stat().st_mode)
    assert mode == 0o600


def test_authenticate_returns_the_tokens_info_and_none_for_anything_else(
    store: TokenStore,
) -> None:
    secret = store.add("deploy", "write", prefix="myproj/")
    info = store.authenticate(secret)
    assert info is not None
    assert (info.name, info.scope, info.prefix) == ("deploy", "write", "myproj")
    assert store.authenticate(secret + "x") is None
    assert store.authenticate(secret[:-1]) is None
    assert store.authenticate("") is None
    assert store.authenticate(hashlib.sha256(secret.encode()).hexdigest()) is None


def test_authenticate_compares_in_constant_time_whether_found_or_not(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = store.add("ci", "write")
    calls: list[tuple[str, str]] = []
    real_compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module artifactd.tokens calls
    assert store.authenticate(secret) is not None
    assert store.authenticate("adt_wrong") is None
    assert len(calls) == 2
    assert all(len(a) == len(b) == 64 for a, b in calls)


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("read", {"read"}),
        ("write", {"read", "write"}),
        ("admin", {"read", "write", "admin"}),
    ],
)
def test_each_scope_implies_the_lower_ones(scope: str, allowed: set[str]) -> None:
    info = TokenInfo("t", scope, None, 0.0)  # type: ignore[arg-type]
    assert {needed for needed in ("read", "write", "admin") if info.allows(needed)} == allowed


@pytest.mark.parametrize(
    ("path", "covered"),
    [
        ("myproj", True),
        ("myproj/1/app.tar.gz", True),
        ("myproj-other/x", False),
        ("myprojx", False),
        ("other/myproj/x", False),
        ("", False),
    ],
)
def test_a_prefix_covers_whole_segments_only(path: str, covered: bool) -> None:
    assert TokenInfo("t", "write", "myproj", 0.0).covers(path) is covered


def test_a_token_without_prefix_covers_everything() -> None:
    assert TokenInfo("t", "write", None, 0.0).covers("anything/at/all")


@pytest.mark.parametrize("prefix", ["myproj", "myproj/", "my%70roj/"])
def test_prefixes_are_normalised(store: TokenStore, prefix: str) -> None:
    store.add("t", "write", prefix=prefix)
    assert store.list()[0].prefix == "myproj"


@pytest.mark.parametrize(
    ("name", "scope", "prefix"),
    [
        ("", "read", None),
        ("has space", "read", None),
        ("-leading-dash", "read", None),
        ("x" * 65, "read", None),
        ("ok", "owner", None),
        ("ok", "READ", None),
        ("ok", "write", "../escape/"),
        ("ok", "write", "/absolute/"),
        ("ok", "write", "/"),
        ("ok", "write", "myproj//"),
        ("ok", "write", ".artifactd/"),
        ("ok", "write", "a/%2e%2e/b"),
        ("ok", "admin", "myproj/"),
    ],
)
def test_bad_input_is_a_value_error_and_stores_nothing(
    store: TokenStore, storage_root: Path, name: str, scope: str, prefix: str | None
) -> None:
    with pytest.raises(InvalidValueError):
        store.add(name, scope, prefix=prefix)
    assert store.list() == []


def test_duplicate_names_are_refused(store: TokenStore) -> None:
    store.add("ci", "read")
    with pytest.raises(DuplicateTokenError):
        store.add("ci", "admin")
    assert [(i.name, i.scope) for i in store.list()] == [("ci", "read")]


def test_list_is_sorted_by_name_and_never_holds_secrets(store: TokenStore) -> None:
    store.add("zeta", "read")
    store.add("alpha", "admin")
    infos = store.list()
    assert [i.name for i in infos] == ["alpha", "zeta"]
    assert set(TokenInfo.__slots__) == {"name", "scope", "prefix", "created_at"}
    assert all(i.created_at > 1_600_000_000 for i in infos)


def test_remove_deletes_the_token_and_reports_absence(store: TokenStore) -> None:
    secret = store.add("ci", "write")
    assert store.remove("ci") is True
    assert store.authenticate(secret) is None
    assert store.remove("ci") is False


def test_remove_on_a_fresh_root_creates_nothing(tmp_path: Path) -> None:
    assert TokenStore(tmp_path / "none").remove("ci") is False
    assert not (tmp_path / "none").exists()


def test_a_missing_file_means_no_tokens(store: TokenStore) -> None:
    assert store.list() == []
    assert store.has_tokens() is False
    assert store.authenticate("adt_anything") is None


def test_tokens_persist_for_a_new_store_instance(storage_root: Path) -> None:
    secret = TokenStore(storage_root).add("ci", "write", prefix="p/")
    again = TokenStore(storage_root)
    info = again.authenticate(secret)
    assert info is not None and info.prefix == "p"


def test_reload_if_changed_sees_changes_made_by_another_instance(storage_root: Path) -> None:
    server = TokenStore(storage_root)
    server.load()
    assert server.reload_if_changed() is False  # nothing changed

    cli = TokenStore(storage_root)
    secret = cli.add("ci", "write")
    assert server.authenticate(secret) is None  # not yet: the server has not looked
    assert server.reload_if_changed() is True
    assert server.authenticate(secret) is not None
    assert server.reload_if_changed() is False

    cli.remove("ci")
    assert server.reload_if_changed() is True
    assert server.authenticate(secret) is None


def test_a_file_corrupted_while_running_keeps_the_previous_tokens(storage_root: Path) -> None:
    server = TokenStore(storage_root)
    secret = server.add("ci", "write")
    tokens_file(storage_root).write_text("{ not json")
    with pytest.raises(TokenFileError):
        server.reload_if_changed()
    assert server.authenticate(secret) is not None
    assert server.reload_if_changed() is False  # reported once, until the file changes


def _entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": "ci",
        "scope": "write",
        "prefix": None,
        "created_at": "2026-01-02T03:04:05Z",
        "sha256": "a" * 64,
    }
    entry.update(overrides)
    return entry


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{ not json",
        "[]",
        json.dumps({"version": 2, "tokens": []}),
        json.dumps({"version": 1}),
        json.dumps({"version": 1, "tokens": {}}),
        json.dumps({"version": 1, "tokens": ["ci"]}),
        json.dumps({"version": 1, "tokens": [{"name": "ci"}]}),
        json.dumps({"version": 1, "tokens": [_entry(scope="root")]}),
        json.dumps({"version": 1, "tokens": [_entry(sha256="short")]}),
        json.dumps({"version": 1, "tokens": [_entry(name="bad name")]}),
        json.dumps({"version": 1, "tokens": [_entry(prefix="../x")]}),
        json.dumps({"version": 1, "tokens": [_entry(created_at="yesterday")]}),
        json.dumps({"version": 1, "tokens": [_entry(), _entry(sha256="b" * 64)]}),
        json.dumps({"version": 1, "tokens": [_entry(), _entry(name="other")]}),
    ],
)
def test_a_corrupt_file_is_a_clear_domain_error(storage_root: Path, content: str) -> None:
    path = tokens_file(storage_root)
    path.parent.mkdir(exist_ok=True)
    path.write_text(content)
    with pytest.raises(TokenFileError, match=r"tokens\.json") as caught:
        TokenStore(storage_root).load()
    assert isinstance(caught.value, ArtifactdError)


def test_a_valid_hand_written_file_loads(storage_root: Path) -> None:
    path = tokens_file(storage_root)
    path.parent.mkdir(exist_ok=True)
    secret = "adt_handmade"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    path.write_text(json.dumps({"version": 1, "tokens": [_entry(sha256=digest, prefix="p/")]}))
    info = TokenStore(storage_root).authenticate(secret)
    assert info is not None
    assert info.prefix == "p"
    assert info.created_at == 1767323045.0


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    store: TokenStore, storage_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add("kept", "read")
    before = tokens_file(storage_root).read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)  # the module artifactd.tokens calls
    with pytest.raises(OSError):
        store.add("lost", "read")
    assert tokens_file(storage_root).read_bytes() == before
    leftovers = [p.name for p in (storage_root / ".artifactd").iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


def test_concurrent_adds_from_threads_lose_nothing(storage_root: Path) -> None:
    stores = [TokenStore(storage_root) for _ in range(4)]  # as if separate processes
    secrets: list[str] = []

    def add_many(worker: int) -> None:
        for i in range(5):
            secrets.append(stores[worker].add(f"w{worker}-{i}", "read"))

    threads = [threading.Thread(target=add_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fresh = TokenStore(storage_root)
    assert len(fresh.list()) == 20
    assert all(fresh.authenticate(secret) is not None for secret in secrets)


# -- `artifactd token` through CliRunner --------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_token_add_prints_the_token_once_with_a_hint_on_stderr(
    runner: CliRunner, storage_root: Path
) -> None:
    result = runner.invoke(
        token, ["add", "ci", "--scope", "write", "--prefix", "myproj/", "--root", str(storage_root)]
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("adt_") and "\n" not in secret
    assert "shown only now" in result.stderr
    assert "limited to myproj/" in result.stderr
    info = TokenStore(storage_root).authenticate(secret)
    assert info is not None and info.scope == "write"


def test_token_ls_shows_names_scopes_prefixes_never_secrets(
    runner: CliRunner, storage_root: Path
) -> None:
    store = TokenStore(storage_root)
    secret = store.add("ci", "write", prefix="myproj/")
    store.add("ops", "admin")
    text = runner.invoke(token, ["ls", "--root", str(storage_root)])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "CREATED", "PREFIX"]
    assert lines[1].split()[:2] == ["ci", "write"] and lines[1].endswith("myproj/")
    assert lines[2].split()[:2] == ["ops", "admin"] and lines[2].endswith("(all)")

    as_json = runner.invoke(token, ["ls", "--json", "--root", str(storage_root)])
    docs = json.loads(as_json.stdout)
    assert docs[0] == {
        "name": "ci",
        "scope": "write",
        "prefix": "myproj/",
        "created_at": docs[0]["created_at"],
    }
    assert docs[0]["created_at"].endswith("Z")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    for output in (text.output, as_json.output):
        assert secret not in output and digest not in output


def test_token_ls_on_an_empty_root(runner: CliRunner, storage_root: Path) -> None:
    result = runner.invoke(token, ["ls", "--json", "--root", str(storage_root)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    plain = runner.invoke(token, ["ls", "--root", str(storage_root)])
    assert plain.exit_code == 0 and plain.stdout == ""


def test_token_rm_removes_and_exits_1_when_absent(runner: CliRunner, storage_root: Path) -> None:
    TokenStore(storage_root).add("ci", "write")
    removed = runner.invoke(token, ["rm", "ci", "--root", str(storage_root)])
    assert removed.exit_code == 0
    assert "removed token 'ci'" in removed.stdout
    absent = runner.invoke(token, ["rm", "ci", "--root", str(storage_root)])
    assert absent.exit_code == 1
    assert "no token named 'ci'" in absent.stderr


def test_root_comes_from_the_environment(runner: CliRunner, storage_root: Path) -> None:
    result = runner.invoke(
        token, ["add", "ci", "--scope", "read"], env={"ARTIFACTD_ROOT": str(storage_root)}
    )
    assert result.exit_code == 0, result.output
    assert [i.name for i in TokenStore(storage_root).list()] == ["ci"]


@pytest.mark.parametrize(
    "args",
    [
        ["add", "ci"],
        ["add", "ci", "--scope", "owner"],
        ["add", "bad name", "--scope", "read"],
        ["add", "ci", "--scope", "write", "--prefix", "../x"],
        ["add", "ci", "--scope", "admin", "--prefix", "myproj/"],
        ["rm"],
    ],
)
def test_bad_input_exits_2_with_a_short_error(
    runner: CliRunner, storage_root: Path, args: list[str]
) -> None:
    result = runner.invoke(token, [*args, "--root", str(storage_root)])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr
    assert "Traceback" not in result.output
    assert TokenStore(storage_root).list() == []


def test_duplicate_name_exits_1(runner: CliRunner, storage_root: Path) -> None:
    TokenStore(storage_root).add("ci", "read")
    result = runner.invoke(token, ["add", "ci", "--scope", "read", "--root", str(storage_root)])
    assert result.exit_code == 1
    assert "already exists" in result.stderr


def test_corrupt_tokens_file_exits_1_without_traceback(
    runner: CliRunner, storage_root: Path
) -> None:
    path = tokens_file(storage_root)
    path.parent.mkdir(exist_ok=True)
    path.write_text("garbage")
    for args in (["ls"], ["add", "x", "--scope", "read"], ["rm", "x"]):
        result = runner.invoke(token, [*args, "--root", str(storage_root)])
        assert result.exit_code == 1, (args, result.output)
        assert "is corrupt" in result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)

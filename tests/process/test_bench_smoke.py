"""The bench harness's client side at tiny sizes against a real artifactd: correctness only.

Every answer must be a 200 or 206 with the right bytes; nothing here is timed (`make bench`
measures, the tests only check that what it measures is right).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bench import clients, noise, servers
from bench import ducktors as ducktors_server
from bench.clients import SlowConfig
from bench.config import FLOOR, FLOOR_META, FLOOR_NO_FSYNC, FLOORS, LOW_LEVEL_FLOOR
from bench.floor_meta import META_DIR, RowLog
from bench.floor_put import DurablePuts
from bench.keyloads import mix_targets, run_mix, validate_mix
from bench.keys import KEY_SIZE, create_keys, key_name
from bench.machine import timer_interrupts
from bench.mix import check_mix, store_objects
from bench.mixclient import kind_of
from bench.results import Results
from bench.targets import evaluate_targets
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

KiB = 1024
FILES = {"large.bin": 2 * 1024 * KiB + 123, "medium.bin": 256 * KiB, "small.bin": 4 * KiB}
have_wrk = pytest.mark.skipif(
    servers.find_tool("wrk") is None, reason="wrk is not installed (`make bench` installs it)"
)


@pytest.fixture
def bench_files(storage_root: Path) -> dict[str, bytes]:
    contents = {name: os.urandom(size) for name, size in FILES.items()}
    for name, data in contents.items():
        (storage_root / name).write_bytes(data)
    return contents


def test_single_stream_ranges_slow_clients_and_upload_are_byte_exact(
    server: ServerProcess, bench_files: dict[str, bytes], tmp_path: Path
) -> None:
    large = bench_files["large.bin"]
    url = server.files_url("large.bin")

    out = tmp_path / "large.out"
    result = clients.curl_download(url, expected_size=len(large), out=out)
    assert result.status == 200
    assert out.read_bytes() == large

    assert clients.check_ranges(url, large, count=40, length=64 * KiB, seed=5) == 40

    cfg = SlowConfig(clients=20, duration=15.0, read_size=64 * KiB, interval=0.005, rcvbuf=8192)
    samples: list[int] = []
    slow = clients.slow_downloads(
        url, size=len(large), cfg=cfg, expected=large, sample=lambda: samples.append(1)
    )
    assert slow.errors == []
    assert (slow.connected, slow.status_ok, slow.completed) == (20, 20, 20)
    assert (slow.mismatches, slow.truncated) == (0, 0)
    assert slow.bytes == 20 * len(large)
    assert samples

    source = tmp_path / "upload.bin"
    source.write_bytes(large)
    upload_url = server.files_url("bench-upload/large.bin")
    uploaded, body = clients.curl_upload(upload_url, source)
    assert uploaded.status == 201
    document = json.loads(body)
    assert document["sha256"] == hashlib.sha256(large).hexdigest()
    assert document["size"] == len(large)
    status, _, got = clients.http_request(upload_url)
    assert (status, got == large) == (200, True)
    assert clients.http_request(upload_url, "DELETE")[0] == 204


@have_wrk
def test_wrk_workloads_answer_200_and_206_of_the_right_size(
    server: ServerProcess, bench_files: dict[str, bytes]
) -> None:
    for name, connections in (("small.bin", 8), ("medium.bin", 4)):
        result = clients.run_wrk(
            server.files_url(name), connections=connections, duration=1, check=True
        )
        clients.validate_wrk(result, body_size=len(bench_files[name]), status=200, checked=True)
        assert result.statuses == {"200": result.requests}

    size = len(bench_files["large.bin"])
    ranges = clients.run_wrk(
        server.files_url("large.bin"),
        connections=4,
        duration=1,
        ranges=(size, 64 * KiB),
        check=True,
    )
    clients.validate_wrk(ranges, body_size=64 * KiB, status=206, checked=True)
    assert ranges.statuses == {"206": ranges.requests}


@have_wrk
def test_put_workload_stores_every_body_whole_on_artifactd_and_nginx(
    server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    """uploads-small: every PUT to a new path is a 201, and every path holds the bytes."""
    targets: list[tuple[str, Path]] = [(server.url, storage_root)]
    nginx = servers.find_tool("nginx")
    started: list[servers.Server] = []
    if nginx is not None:
        data_dir = tmp_path / "nginx-data"
        data_dir.mkdir()
        os.chmod(tmp_path, 0o755)
        os.chmod(data_dir, 0o777)  # nginx's worker writes there, whoever it runs as
        started.append(servers.start_nginx("nginx", nginx, data_dir, tmp_path, cpu=None))
        targets.append((started[0].url, data_dir))
    try:
        for base, root in targets:
            for size in (4 * KiB, 64 * KiB):
                url = f"{base}/files/put/{size}/"
                result = clients.run_wrk(
                    url, connections=4, duration=1, put=(size, "t"), check=True
                )
                clients.validate_puts(result, checked=True)
                assert result.statuses == {"201": result.requests}
                names = os.listdir(root / "put" / str(size))
                assert len(names) >= result.requests
                for name in names:
                    assert (root / "put" / str(size) / name).read_bytes() == clients.put_body(size)
                status, _, body = clients.http_request(url + names[0])
                assert (status, body == clients.put_body(size)) == (200, True)
    finally:
        for srv in started:
            srv.stop()
    failed = clients.WrkResult(3, 300, 1.0, {"status": 1}, {}, {}, 0.1)
    with pytest.raises(clients.BenchError, match="errors"):
        clients.validate_puts(failed, checked=False)
    conflict = clients.WrkResult(3, 300, 1.0, {"status": 0}, {}, {"201": 2, "412": 1}, 0.1)
    with pytest.raises(clients.BenchError, match="201"):
        clients.validate_puts(conflict, checked=True)


def test_wrong_answers_are_caught() -> None:
    fine = clients.WrkResult(10, 10 * 4200, 1.0, {"read": 0}, {}, {"200": 10}, 0.1)
    clients.validate_wrk(fine, body_size=4096, status=200, checked=True)
    full_bodies = clients.WrkResult(10, 10 * 2**20, 1.0, {"read": 0}, {}, {}, 0.1)
    with pytest.raises(clients.BenchError, match="bytes per response"):
        clients.validate_wrk(full_bodies, body_size=65536, status=206, checked=False)
    wrong_status = clients.WrkResult(10, 10 * 66000, 1.0, {"read": 0}, {}, {"200": 10}, 0.1)
    with pytest.raises(clients.BenchError, match="status"):
        clients.validate_wrk(wrong_status, body_size=65536, status=206, checked=True)
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        clients.http_request("http://example.com:80/files/x")


@pytest.fixture
def fileresponse_baseline(storage_root: Path, tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.start_fileresponse("aiohttp", storage_root, tmp_path, cpu=None)
    try:
        yield server
    finally:
        server.stop()


def test_baselines_serve_the_same_bytes(
    fileresponse_baseline: servers.Server,
    storage_root: Path,
    bench_files: dict[str, bytes],
    tmp_path: Path,
) -> None:
    large = bench_files["large.bin"]
    started = [fileresponse_baseline]
    nginx = servers.find_tool("nginx")
    if nginx is not None:
        started.append(servers.start_nginx("nginx", nginx, storage_root, tmp_path, cpu=None))
    try:
        for srv in started:
            url = srv.files_url("large.bin")
            status, _, body = clients.http_request(url)
            assert (srv.name, status, body == large) == (srv.name, 200, True)
            clients.check_ranges(url, large, count=5, length=64 * KiB)
            assert srv.cpu_seconds() >= 0 and srv.rss_kib() > 0
            assert clients.http_request(srv.files_url("missing.bin"))[0] == 404
    finally:
        for srv in started[1:]:
            srv.stop()


@pytest.mark.parametrize("name", FLOORS)
def test_the_aiohttp_floors_answer_small_files_and_ranges_byte_exact(
    name: str, storage_root: Path, bench_files: dict[str, bytes], tmp_path: Path
) -> None:
    low_level = name == LOW_LEVEL_FLOOR
    floor = servers.start_floor(name, storage_root, tmp_path, cpu=None, low_level=low_level)
    try:
        small = bench_files["small.bin"]
        status, headers, _ = clients.http_request(floor.files_url("large.bin"), "HEAD")
        assert (status, headers["content-length"]) == (200, str(len(bench_files["large.bin"])))
        status, headers, body = clients.http_request(floor.files_url("small.bin"))
        assert (status, body == small) == (200, True)
        assert headers["x-request-id"] and headers["x-content-type-options"] == "nosniff"
        clients.check_ranges(
            floor.files_url("large.bin"), bench_files["large.bin"], count=5, length=64 * KiB
        )
        assert clients.http_request(floor.files_url("missing.bin"))[0] == 404
    finally:
        floor.stop()
    # Like artifactd, both floors write an access-log line per request: it is part of
    # the per-request cost they stand for.
    log = floor.log_path.read_text()
    assert '"GET /files/small.bin" 200 ' in log
    assert '"GET /files/missing.bin" 404 ' in log
    assert log.count(" 206 ") >= 5


def test_targets_read_ratios_from_the_medians() -> None:
    results = Results()
    for value in (0.40, 0.50, 0.60):
        results.add("large_cpu_s_per_gib", "artifactd", value)
        results.add("large_cpu_s_per_gib", "nginx", 0.5)
    results.add("small_rps", "artifactd", 30000.0)
    results.add("small_rps", "aiohttp", 10000.0)
    results.add("slow_peak_rss_mib", "artifactd", 70.0)
    results.add("growth_peak_rss_mib", "artifactd", 70.0)
    rows = {row["key"]: row for row in evaluate_targets(results)}
    assert rows["large_cpu"]["compared"] == pytest.approx(1.0)
    assert rows["large_cpu"]["verdict"] == "PASS"
    assert rows["small_rps"]["verdict"] == "PASS"
    assert rows["slow_rss"]["verdict"] == "FAIL"
    assert rows["slow_rss_growth"]["verdict"] == "PASS"
    assert rows["upload"]["verdict"] == rows["large_throughput"]["verdict"] == "SKIP"
    assert "ceiling" not in rows["small_rps"]
    results.add("small_rps", FLOOR, 40000.0)
    rows = {row["key"]: row for row in evaluate_targets(results)}
    assert rows["small_rps"]["ceiling"] == pytest.approx(4.0)
    assert "aiohttp floor 4.00× aiohttp" in rows["small_rps"]["detail"]
    results.add("small_rps", LOW_LEVEL_FLOOR, 55000.0)
    rows = {row["key"]: row for row in evaluate_targets(results)}
    assert rows["small_rps"]["low_level_ceiling"] == pytest.approx(5.5)
    assert "aiohttp floor 4.00× aiohttp, low-level 5.50× aiohttp" in rows["small_rps"]["detail"]
    results.add("put_4k_rps", "artifactd", 3000.0)
    results.add("put_4k_rps", "nginx", 8000.0)
    results.durable_files_per_s = 4000.0
    put = {row["key"]: row for row in evaluate_targets(results)}["put_4k"]
    assert (put["verdict"], put["compared"]) == ("FAIL", pytest.approx(0.375))
    assert "this disk makes 4,000 new files/s durable" in put["detail"]
    assert "(bench/fsync_ceiling.py, 16 writers) = 0.50× nginx" in put["detail"]
    assert put["durable_files_ratio"] == pytest.approx(0.5)
    # The floors' PUT rates, durable and not, beside the PUT targets with their ratios.
    results.add("put_4k_rps", FLOOR, 3500.0)
    results.add("put_4k_rps", LOW_LEVEL_FLOOR, 3600.0)
    results.add("put_4k_rps", FLOOR_NO_FSYNC, 7000.0)
    results.add("put_4k_rps", FLOOR_META, 3200.0)
    put = {row["key"]: row for row in evaluate_targets(results)}["put_4k"]
    assert (put["ceiling"], put["no_fsync_ceiling"]) == (pytest.approx(0.4375), 0.875)
    assert put["meta_ceiling"] == pytest.approx(0.4)
    assert (
        "aiohttp floor (durable PUT) 3,500 req/s = 0.44× nginx, "
        "low-level 3,600 req/s = 0.45× nginx, without fsync 7,000 req/s = 0.88× nginx, "
        "with durable metadata 3,200 req/s = 0.40× nginx"
    ) in put["detail"]
    results.add("random_keys_rps", "artifactd", 2000.0)
    results.add("random_keys_rps", "nginx", 10000.0)
    results.add("random_keys_rps", FLOOR, 6000.0)
    keys = {row["key"]: row for row in evaluate_targets(results)}["random_keys_nginx"]
    assert "aiohttp floor 0.60× nginx" in keys["detail"]
    assert "server CPU per request" not in keys["detail"]
    # and, where the phase recorded it, the server CPU per request, median over the runs
    for server, values in (("artifactd", (90.0, 80.0, 85.0)), (FLOOR, (50.0,))):
        for value in values:
            results.detail("random_keys", server, {"server_cpu_us_per_request": value})
    keys = {row["key"]: row for row in evaluate_targets(results)}["random_keys_nginx"]
    assert keys["detail"].endswith("; server CPU per request (µs): artifactd 85, floor 50")
    assert (keys["cpu_us"], keys["ceiling_cpu_us"]) == (85.0, 50.0)
    results.add("upload_gbps", "artifactd", 0.4)
    results.upload_ceilings = {"disk write+fsync": 0.3, "sha256 on one core": 1.4}
    upload = {row["key"]: row for row in evaluate_targets(results)}["upload"]
    assert (upload["verdict"], upload["ceiling"]) == ("FAIL", 0.3)
    assert "disk write+fsync 0.30 GB/s, sha256 on one core 1.40 GB/s" in upload["detail"]


def test_noise_counts_the_bench_own_children_as_its_own() -> None:
    before = noise.snapshot()
    subprocess.run([sys.executable, "-c", "sum(range(30_000_000))"], check=True, timeout=30)
    after = noise.snapshot()
    usage = noise.usage_between(before, after)
    ours = (after.busy - before.busy) - usage.foreign_cpu - usage.softirq_cpu
    assert ours >= 0.15  # the child's CPU time is the bench's own, whatever else ran


def test_harness_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--scale" in out.stdout


def test_timer_interrupts_are_read_per_cpu_and_only_grow() -> None:
    """The diagnostics column 'server-core timer IRQs per request' reads /proc/interrupts:
    each CPU's LOC count, a counter; a CPU that does not exist has none."""
    first = timer_interrupts(0)
    assert first is not None and first > 0
    subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True, timeout=30)
    second = timer_interrupts(0)
    assert second is not None and second >= first
    assert timer_interrupts(os.cpu_count() or 1) is None  # CPUn is one past the last


KEYS = 300  # the random-keys workload's artifacts, at a smoke test's scale


@have_wrk
def test_random_keys_answer_every_key_with_its_4_kib(
    server: ServerProcess, storage_root: Path
) -> None:
    create_keys(storage_root, KEYS)  # placed by hand: digested on first sight
    started = [server.url]
    nginx_path = servers.find_tool("nginx")
    nginx = None
    if nginx_path is not None:
        nginx = servers.start_nginx("nginx", nginx_path, storage_root, storage_root.parent, None)
        started.append(nginx.url)
    try:
        for i in (0, 1, KEYS - 1):
            status, _, body = clients.http_request(server.files_url(key_name(i)))
            assert (status, body) == (200, (storage_root / key_name(i)).read_bytes())
        for url in started:
            result = clients.run_wrk(
                f"{url}/files/", connections=4, duration=1, check=True, keys=KEYS
            )
            clients.validate_wrk(result, body_size=KEY_SIZE, status=200, checked=True)
            assert result.statuses == {"200": result.requests}
    finally:
        if nginx is not None:
            nginx.stop()


def mix_servers(root: Path, workdir: Path) -> Iterator[servers.Server]:
    """nginx (WebDAV) and ducktors' server, those installed, started for the cache mix."""
    nginx = servers.find_tool("nginx")
    if nginx is not None:
        (root / "dav").mkdir(parents=True)
        yield servers.start_nginx("nginx", nginx, root, workdir, cpu=None)
    ducktors = ducktors_server.find_ducktors()
    if ducktors is not None:
        yield ducktors_server.start_ducktors("ducktors", ducktors, workdir, cpu=None)


def test_the_cache_mix_is_answered_byte_exact_by_every_server(
    server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    others = list(mix_servers(tmp_path / "nginx-root", tmp_path))
    try:
        targets = list(mix_targets(server.url, "artifactd").items())
        for other in others:
            targets += list(mix_targets(other.url, other.kind).items())
        assert len(targets) == 2 + len(others)
        for metric, target in targets:
            store_objects(target, 27)
            seen = check_mix(target, 27, requests=150)
            assert min(seen.values()) > 0, (metric, target, seen)
            result = run_mix(target, 27, duration=1.0)
            validate_mix(result)
            assert result.requests > 0 and "404" in result.statuses, (target, result.statuses)
        for _, target in targets[:2]:  # artifactd's two: one kind at a time
            heads = run_mix(target, 27, duration=0.5, only="head")
            misses = run_mix(target, 27, duration=0.5, only="miss")
            assert list(heads.statuses) == ["200"] and heads.requests > 0, heads.statuses
            assert list(misses.statuses) == ["404"] and misses.requests > 0, misses.statuses
    finally:
        for other in others:
            other.stop()


def test_the_mix_draws_its_kinds_by_their_weights() -> None:
    drawn = Counter(kind_of(roll) for roll in range(100))
    assert drawn == {"get": 70, "miss": 10, "head": 10, "put": 10}
    with pytest.raises(ValueError):
        kind_of(100)


@pytest.mark.parametrize("fsync", [True, False])
def test_the_floor_put_is_durable_and_its_directory_fsyncs_are_shared(
    fsync: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 concurrent PUTs into one new directory: each body fsynced, the directory entries
    covered by fewer directory fsyncs than PUTs (group commit); without fsync, none."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync_spy(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        synced.append(kind)
        real_fsync(fd)
        if kind == "dir":
            time.sleep(0.02)  # a slow disk's flush: renames arrive while it runs

    monkeypatch.setattr(os, "fsync", fsync_spy)
    puts = DurablePuts(tmp_path, fsync=fsync)
    bodies = {f"new/dir/{i}.bin": os.urandom(4 * KiB) for i in range(64)}
    first, *rest = bodies.items()
    stored = [puts.store_sync(*first)]  # makes the two directories
    dirs_made = synced.count("dir")
    stored += puts.executor.map(lambda item: puts.store_sync(*item), rest)
    for answer, (path, body) in zip(stored, bodies.items(), strict=True):
        assert (answer.path, answer.size) == (path, len(body))
        assert answer.sha256 == hashlib.sha256(body).hexdigest()
        assert (tmp_path / path).read_bytes() == body
    assert sorted(os.listdir(tmp_path / "new" / "dir")) == sorted(
        p.rsplit("/", 1)[1] for p in bodies
    )  # no temp file left
    if not fsync:
        assert synced == []
        return
    assert synced.count("file") == len(bodies)
    assert dirs_made == 3  # each new directory's entry in its parent, then the first rename
    # the other 63 renames: covered by a few directory fsyncs, not one each
    assert 1 <= synced.count("dir") - dirs_made < len(rest) // 4


def test_the_metadata_floor_s_rows_are_durable_before_each_rename_and_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--metadata`: each PUT's row (its digest, size, inode and content type) is committed
    before its file is renamed into place, and concurrent PUTs share transactions."""
    commit = RowLog._commit

    def slow_commit(self: RowLog, rows: list[Any]) -> None:
        commit(self, rows)
        time.sleep(0.02)  # a slow disk's WAL flush: rows arrive while it runs

    monkeypatch.setattr(RowLog, "_commit", slow_commit)
    puts = DurablePuts(tmp_path, metadata=True)
    db = tmp_path / META_DIR / "metadata.db"
    real_rename = os.rename
    unrecorded: list[str] = []

    def rename_spy(source: Any, target: Any) -> None:
        rel = os.path.relpath(target, tmp_path)
        with sqlite3.connect(db) as reader:  # another connection: sees committed rows only
            found = reader.execute("SELECT ino FROM versions WHERE path = ?", (rel,)).fetchone()
        if found is None or found[0] != os.stat(source).st_ino:
            unrecorded.append(rel)
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename_spy)
    bodies = {f"meta/{i}.bin": os.urandom(4 * KiB) for i in range(48)}
    stored = list(puts.executor.map(lambda item: puts.store_sync(*item), bodies.items()))
    assert unrecorded == []
    assert [answer.path for answer in stored] == list(bodies)
    assert puts.rows is not None and 1 <= puts.rows.commits < len(bodies) // 4
    with sqlite3.connect(db) as reader:
        rows = dict(reader.execute("SELECT path, sha256 FROM versions").fetchall())
    assert rows == {path: hashlib.sha256(body).hexdigest() for path, body in bodies.items()}


@have_wrk
@pytest.mark.parametrize("name", [*FLOORS, FLOOR_NO_FSYNC, FLOOR_META])
def test_the_floors_take_the_small_object_workloads(
    name: str, storage_root: Path, bench_files: dict[str, bytes], tmp_path: Path
) -> None:
    """uploads-small, random-keys and cache-mix on each floor: every PUT a 201 whose bytes
    are read back, every key its own 4 KiB read from disk, the mix checked byte for byte."""
    floor = servers.start_floor(
        name,
        storage_root,
        tmp_path,
        cpu=None,
        low_level=name == LOW_LEVEL_FLOOR,
        fsync=name != FLOOR_NO_FSYNC,
        metadata=name == FLOOR_META,
    )
    try:
        for size in (4 * KiB, 64 * KiB):
            url = floor.files_url(f"put/{size}/")
            result = clients.run_wrk(url, connections=4, duration=1, put=(size, "t"), check=True)
            clients.validate_puts(result, checked=True)
            # without the temp files of PUTs still in flight when wrk stopped
            names = [n for n in os.listdir(storage_root / "put" / str(size)) if n[0] != "."]
            assert len(names) >= result.requests
            for stored in names:
                assert (storage_root / "put" / str(size) / stored).read_bytes() == (
                    clients.put_body(size)
                )
            status, _, body = clients.http_request(url + names[0])
            assert (status, body == clients.put_body(size)) == (200, True)
        if name == FLOOR_META:  # a row for every file PUT (201s and any still in flight)
            with sqlite3.connect(storage_root / META_DIR / "metadata.db") as reader:
                (recorded,) = reader.execute("SELECT count(*) FROM versions").fetchone()
            stored_files = sum(
                1
                for size in (4 * KiB, 64 * KiB)
                for n in os.listdir(storage_root / "put" / str(size))
                if n[0] != "."
            )
            assert recorded >= stored_files > 0

        create_keys(storage_root, KEYS)  # after the start: not among the files in memory
        for i in (0, 1, KEYS - 1):
            status, _, body = clients.http_request(floor.files_url(key_name(i)))
            assert (status, body) == (200, (storage_root / key_name(i)).read_bytes())
        result = clients.run_wrk(
            floor.files_url(""), connections=4, duration=1, check=True, keys=KEYS
        )
        clients.validate_wrk(result, body_size=KEY_SIZE, status=200, checked=True)
        assert clients.http_request(floor.files_url("keys/00/missing.bin"))[0] == 404
        # a key replaced (a new inode): its new bytes, with validators built afresh
        _, before, _ = clients.http_request(floor.files_url(key_name(1)))
        replacement = storage_root / "replacement.tmp"
        replacement.write_bytes(b"r" * KEY_SIZE)
        os.replace(replacement, storage_root / key_name(1))
        status, after, body = clients.http_request(floor.files_url(key_name(1)))
        assert (status, body) == (200, b"r" * KEY_SIZE)
        assert after["etag"] != before["etag"]
        assert clients.http_request(floor.files_url("keys/../small.bin"))[0] == 404

        (target,) = mix_targets(floor.url, floor.kind).values()
        store_objects(target, 27)
        seen = check_mix(target, 27, requests=150)
        assert min(seen.values()) > 0, seen
        validate_mix(run_mix(target, 27, duration=1.0))
    finally:
        floor.stop()
    log = floor.log_path.read_text()
    assert f'"PUT /files/put/{4 * KiB}/t-' in log and '"PUT /files/mix/' in log
    assert f'"GET /files/{key_name(0)}" 200 ' in log


@have_wrk
def test_the_harness_prints_the_floors_beside_the_small_object_targets(tmp_path: Path) -> None:
    """`make bench` at --scale tiny over the small-object workloads: each floor takes the
    phases it is listed for, and their ratios land beside the targets (artifactd is left out
    for speed: its targets are then SKIP, their ceilings still measured)."""
    if servers.find_tool("nginx") is None:
        pytest.skip("nginx is not installed (`make bench` installs it)")
    names = f"nginx,{FLOOR},{FLOOR_NO_FSYNC}"  # the low-level floor: as FLOOR, tested above
    argv = ["--scale", "tiny", "--keys", "300", "--quiet-threshold", "0", "--servers", names]
    argv += ["--workloads", "uploads-small,random-keys,cache-mix", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.harness", *argv],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((tmp_path / "latest.json").read_text())
    samples = document["samples"]
    assert set(samples["put_4k_rps"]) == {"nginx", FLOOR, FLOOR_NO_FSYNC}
    assert set(samples["random_keys_rps"]) == set(samples["cache_mix_rps"]) == {"nginx", FLOOR}
    rows = {row["key"]: row for row in document["targets"]}
    for key in ("put_4k", "put_64k"):
        assert {"ceiling", "no_fsync_ceiling"} <= set(rows[key])
        assert "aiohttp floor (durable PUT) " in rows[key]["detail"]
        assert "16 writers) = " in rows[key]["detail"]
    for key in ("random_keys_nginx", "cache_mix_nginx"):
        assert "aiohttp floor " in rows[key]["detail"] and rows[key]["ceiling"] > 0
    assert "aiohttp floor (durable PUT)" in done.stdout


def test_the_floor_knows_every_key_s_headers_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As artifactd has each key's row before it starts, the floor builds each file's
    headers at startup: a timed read of a key costs its syscalls, not their formatting."""
    from bench import baseline_floor

    for name in ("FILES", "DISK_HEADERS"):
        monkeypatch.setattr(baseline_floor, name, {})
    monkeypatch.setattr(baseline_floor, "PUTS", [])
    (tmp_path / "small.bin").write_bytes(b"s" * KiB)
    create_keys(tmp_path, 20)
    baseline_floor.load_files(tmp_path)
    assert set(baseline_floor.FILES) == {"small.bin"}  # in memory: the test files only
    assert set(baseline_floor.DISK_HEADERS) == {key_name(i) for i in range(20)}
    built = baseline_floor.DISK_HEADERS[key_name(3)][1]
    answer = baseline_floor.from_disk(key_name(3), head=False)
    assert answer.body == (tmp_path / key_name(3)).read_bytes()
    assert answer.headers["ETag"] == built["ETag"]
    assert baseline_floor.DISK_HEADERS[key_name(3)][1] is built  # not built again
    # a PUT records the headers of what it stored, as artifactd records its row
    body = b"p" * 100

    class Content:
        async def read(self) -> bytes:
            return body

    request = cast(Any, SimpleNamespace(content=Content()))
    stored = asyncio.run(baseline_floor.store(request, "mix/new.bin"))
    assert stored.status == 201 and (tmp_path / "mix" / "new.bin").read_bytes() == body
    on_disk = os.stat(tmp_path / "mix" / "new.bin")
    identity = (on_disk.st_ino, on_disk.st_mtime_ns, on_disk.st_size)
    assert baseline_floor.DISK_HEADERS["mix/new.bin"][0] == identity


def test_the_random_keys_warm_up_reads_other_keys_than_the_timed_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replay of the warm-up's keys seconds later would find some of them still hot."""
    from contextlib import nullcontext

    from bench.keyloads import KeyWorkloads

    seeds: list[int] = []

    def fake_wrk(url: str, **kwargs: Any) -> clients.WrkResult:
        seeds.append(kwargs.get("seed", 1))
        return clients.WrkResult(
            requests=16,
            bytes=16 * KEY_SIZE,
            seconds=1.0,
            errors={},
            latency_us={},
            statuses={"200": 16},
            client_cpu_seconds=0.0,
        )

    monkeypatch.setattr(clients, "run_wrk", fake_wrk)
    monkeypatch.setattr(clients, "validate_wrk", lambda *args, **kwargs: None)

    class Workloads(KeyWorkloads):
        def timed(self, server: Any) -> Any:
            return nullcontext(SimpleNamespace(server_cpu=0.0, as_dict=dict))

        def add(self, metric: str, server: Any, value: float, timing: Any) -> None:
            pass

    workloads = Workloads()
    workloads.cfg = cast(
        Any, SimpleNamespace(scale=SimpleNamespace(keys=10, wrk_warmup=1, wrk_duration=1))
    )
    workloads.results = cast(Any, SimpleNamespace(detail=lambda *args: None))
    server = SimpleNamespace(
        name="nginx", kind="nginx", files_url=lambda path: f"http://127.0.0.1:1/files/{path}"
    )
    workloads.random_keys(cast(Any, server))
    warm_up, timed = seeds
    assert warm_up != timed

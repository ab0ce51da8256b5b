"""`artifactd push` of one big file three ways on one server, timed: a plain PUT
(`--resumable-above` over the size), a resumable push (tus, 8 MiB pieces), and a resumable
push during which the server is SIGKILLed and restarted on the same port and root
`--restarts` times. Each stored artifact is read back and compared byte for byte; the
server's access log gives the last PATCH's time (the completion: the received bytes read
back and streamed through a PUT's verified commit) against the other pieces'.

    .venv/bin/python -m bench.resumable_push --size 1GiB --restarts 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from artifactd.durations import parse_size

READY = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))/")
PATCH_LINE = re.compile(r'"PATCH /uploads/\S+" 204 \d+ ([0-9.]+)ms')
MIB = 1024 * 1024


class Server:
    """`artifactd serve` in the foreground; its stderr (the access log) kept."""

    def __init__(self, root: Path, port: int = 0) -> None:
        command = [sys.executable, "-m", "artifactd", "serve", "--root", str(root)]
        command += ["--port", str(port), "--evict-interval", "1h"]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = READY.search(line)
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                break
        else:
            raise RuntimeError("artifactd did not start")
        self.log: list[str] = []
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        self.log.extend(self.proc.stderr)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(60)
        self.reader.join(10)


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MIB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def served_sha256(url: str) -> str:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=600) as response:
        while block := response.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def acknowledged(root: Path) -> int:
    for state in (root / ".artifactd" / "uploads").glob("*.json"):
        try:
            return int(json.loads(state.read_text())["offset"])
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def push(url: str, file: Path, resumable_above: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "artifactd", "push", url, str(file)]
    command += ["--resumable-above", resumable_above]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(root: Path, file: Path, size: int, sha256: str, name: str, restarts: int) -> None:
    """One push; with `restarts`, the server is killed each time another 1/(restarts+1)
    of the file is acknowledged, and started again."""
    server = Server(root)
    url = f"{server.url}/files/bench/artifact.bin"
    above = "64M" if name != "put" else str(size + 1)
    started = time.perf_counter()
    pushing = push(url, file, above)
    log: list[str] = []
    for number in range(1, restarts + 1):
        while acknowledged(root) < size * number // (restarts + 1):
            if pushing.poll() is not None:
                raise RuntimeError(f"push ended before restart {number}: {pushing.stderr}")
            time.sleep(0.01)
        server.stop(signal.SIGKILL)
        log += server.log
        server = Server(root, server.port)
    _, err = pushing.communicate(timeout=3600)
    elapsed = time.perf_counter() - started
    if pushing.returncode != 0:
        raise RuntimeError(f"push failed: {err}")
    exact = served_sha256(url) == sha256
    server.stop()
    log += server.log
    patches = [float(m.group(1)) for line in log if (m := PATCH_LINE.search(line))]
    resumed = re.findall(r"resumed the upload at byte (\d+)", err)
    line = f"{name:>22}: {elapsed:6.1f} s  {size / MIB / elapsed:6.0f} MiB/s  byte-exact {exact}"
    if resumed:
        line += f"  resumed at {', '.join(resumed)}"
    print(line)
    if len(patches) > 1:
        median = statistics.median(patches[:-1])
        print(
            f"{'':>22}  {len(patches)} PATCHes answered: median {median:.0f} ms per 8 MiB"
            f" piece, the last (with the completion) {patches[-1] / 1000:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--restarts", type=int, default=2, help="server kills (default 2)")
    parser.add_argument("--dir", default=None, help="where the file and roots go (a disk)")
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        base = Path(directory)
        file = base / "artifact.bin"
        sha256 = make_file(file, size)
        print(f"{size / MIB:.0f} MiB, 8 MiB pieces, one server on a fresh root each time")
        runs = (("put", 0), ("resumable", 0), (f"resumable, {args.restarts} kills", args.restarts))
        for number, (name, restarts) in enumerate(runs):
            run(base / f"root{number}", file, size, sha256, name, restarts)


if __name__ == "__main__":
    main()

"""Server processes for the bench: start, pin to a CPU, read their CPU time and memory, stop.

Every server listens on 127.0.0.1 only and is started in the foreground as a child of the
harness: artifactd, aiohttp's `web.FileResponse` app (bench/baseline_fileresponse.py), the
aiohttp floor (bench/baseline_floor.py) and nginx (bench/nginx.conf.template, its own prefix,
pid and log paths); ducktors' server is bench/ducktors.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)/")


def find_tool(name: str) -> str | None:
    """`shutil.which`, also looking in the sbin directories a non-root PATH may lack."""
    extra = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
    return shutil.which(name) or shutil.which(name, path=extra)


def pin_prefix(cpu: int | None) -> list[str]:
    """A command prefix that runs the command on one CPU (taskset execs, so pids match)."""
    if cpu is None:
        return []
    taskset = find_tool("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is needed to pin servers to a CPU")
    return [taskset, "-c", str(cpu)]


def free_port() -> int:
    """A currently free loopback port (for servers that cannot bind port 0 and say which)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- /proc readers --------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat fields after the command name (field 3, the state, is index 0)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads, live and exited), to the nanosecond: the
    process's CPU-time clock (clock_getcpuclockid), which Linux lets anyone read. utime+stime
    from /proc/<pid>/stat (the fallback) count in 10 ms ticks."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, SCHED)
    except OSError:
        return process_cpu_ticks(pid)


def process_cpu_ticks(pid: int) -> float:
    """User + system CPU time from /proc/<pid>/stat, in clock ticks (10 ms here)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """Direct children of `pid`, from each process's parent id in /proc."""
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def status_kib(pid: int, key: str) -> int:
    """A `kB` value from /proc/<pid>/status (VmRSS, VmHWM, ...); 0 if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """One running server process; `serving_pids` are the processes that answer requests."""

    name: str
    description: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    kind: str
    _serving: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def files_url(self, rel: str) -> str:
        return f"{self.url}/files/{rel}"

    def serving_pids(self) -> list[int]:
        """nginx: the worker(s); the Python servers: the process itself."""
        if self.kind != "nginx":
            return [self.pid]
        if not self._serving:
            self._serving = children_of(self.pid)
        return self._serving or [self.pid]

    def all_pids(self) -> list[int]:
        pids = [self.pid]
        if self.kind == "nginx":
            pids += [p for p in self.serving_pids() if p != self.pid]
        return pids

    def cpu_seconds(self) -> float:
        """CPU time of the whole server (master and workers), user + system."""
        return sum(process_cpu_seconds(pid) for pid in self.all_pids())

    def cpu_ticks_seconds(self) -> float:
        """The same from /proc/<pid>/stat (tick-sampled; kept for comparison)."""
        return sum(process_cpu_ticks(pid) for pid in self.all_pids())

    def rss_kib(self) -> int:
        return sum(status_kib(pid, "VmRSS") for pid in self.serving_pids())

    def peak_rss_kib(self) -> int:
        return sum(status_kib(pid, "VmHWM") for pid in self.serving_pids())

    def reset_peak_rss(self) -> bool:
        return all(reset_peak_rss(pid) for pid in self.serving_pids())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (nginx: fast shutdown too), then SIGKILL if it lingers; always reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _wait_for_readiness(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """Read stdout until the readiness line; the URL, or None on exit or timeout."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            match = READY.search(raw.decode(errors="replace"))
            if match:
                found.append(match.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found else None


def _start_announcing(
    name: str,
    description: str,
    kind: str,
    cmd: Sequence[str],
    log_path: Path,
    cpu: int | None,
    timeout: float,
    env: dict[str, str] | None = None,
) -> Server:
    """Start a server that prints `listening on http://127.0.0.1:PORT/` when ready.

    It runs in the directory of its log, so `python -m` finds no package by accident there."""
    log_file = log_path.open("wb")
    try:
        proc = subprocess.Popen(
            [*pin_prefix(cpu), *cmd],
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            cwd=log_path.parent,
            env={**os.environ, **(env or {})},
        )
    finally:
        log_file.close()
    url = _wait_for_readiness(proc, timeout)
    server = Server(name, description, proc, url or "", log_path, kind)
    if url is None:
        server.stop()
        raise RuntimeError(f"{name} did not become ready; log:\n{server.log_tail()}")
    return server


def start_artifactd(
    name: str,
    root: Path,
    workdir: Path,
    cpu: int | None,
    loop: str = "uvloop",
    src: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Server:
    """`artifactd serve` in its default configuration (plus `--loop`), access log to a file.

    `src`: a directory holding another checkout's `artifactd` package to run instead of the
    installed one (before/after comparisons)."""
    cmd = [sys.executable, "-m", "artifactd", "serve", "--root", str(root)]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--loop", loop, *extra_args]
    env = None
    description = f"artifactd, default config, {loop}"
    if src is not None:
        env = {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
        }
        description += f", from {src}"
    return _start_announcing(
        name,
        description,
        "artifactd",
        cmd,
        workdir / f"{name}.log",
        cpu,
        timeout=60.0,
        env=env,
    )


def start_fileresponse(
    name: str, root: Path, workdir: Path, cpu: int | None, loop: str = "uvloop"
) -> Server:
    """aiohttp's own `web.FileResponse` over the same directory."""
    cmd = [sys.executable, str(BENCH_DIR / "baseline_fileresponse.py"), "--root", str(root)]
    cmd += ["--port", "0", "--loop", loop]
    return _start_announcing(
        name,
        f"aiohttp web.FileResponse, {loop}",
        "fileresponse",
        cmd,
        workdir / f"{name}.log",
        cpu,
        timeout=30.0,
    )


def start_floor(
    name: str,
    root: Path,
    workdir: Path,
    cpu: int | None,
    low_level: bool = False,
    fsync: bool = True,
    metadata: bool = False,
) -> Server:
    """bench/baseline_floor.py: aiohttp answering bytes held in memory or read on the loop,
    storing PUTs durably (a ceiling); with `low_level`, from a low-level web.Server instead
    of an Application; without `fsync`, PUTs as nginx writes them; with `metadata`, a
    durable SQLite row per PUT before its rename (bench/floor_meta.py)."""
    cmd = [sys.executable, "-m", "bench.baseline_floor", "--root", str(root), "--port", "0"]
    if low_level:
        cmd.append("--low-level")
    if not fsync:
        cmd.append("--no-fsync")
    if metadata:
        cmd.append("--metadata")
    path = os.pathsep.join(filter(None, [str(BENCH_DIR.parent), os.environ.get("PYTHONPATH")]))
    shape = "web.Server, no Application" if low_level else "one middleware"
    put = "durable PUT" if fsync else "PUT without fsync"
    if metadata:
        put += " with a durable SQLite row"
    return _start_announcing(
        name,
        f"aiohttp floor: bytes in memory or read on the loop, {put}, {shape}, access log, uvloop",
        "floor",
        cmd,
        workdir / f"{name}.log",
        cpu,
        timeout=30.0,
        env={"PYTHONPATH": path},  # it imports bench.baseline_fileresponse
    )


def nginx_version(nginx: str) -> str:
    result = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    return (result.stderr or result.stdout).strip().replace("nginx version: ", "")


def render_nginx_conf(prefix: Path, root: Path, port: int) -> str:
    template = (BENCH_DIR / "nginx.conf.template").read_text()
    mime = Path("/etc/nginx/mime.types")
    replacements = {
        "@PREFIX@": str(prefix),
        "@ROOT@": str(root),
        "@PORT@": str(port),
        "@MIME_TYPES@": f"include {mime};" if mime.is_file() else "",
        "@USER@": "user root;" if os.geteuid() == 0 else "",
    }
    for key, value in replacements.items():
        template = template.replace(key, value)
    return template


def start_nginx(name: str, nginx: str, root: Path, workdir: Path, cpu: int | None) -> Server:
    """nginx in the foreground (`daemon off`) with its own prefix, on a free loopback port."""
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    last_error = ""
    for _attempt in range(5):
        port = free_port()
        conf.write_text(render_nginx_conf(prefix, root, port))
        log_path = prefix / "stderr.log"
        cmd = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [*pin_prefix(cpu), *cmd],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = Server(
            name,
            f"nginx {nginx_version(nginx)}, stock config, sendfile on, tcp_nopush off",
            proc,
            f"http://127.0.0.1:{port}",
            prefix / "error.log",
            "nginx",
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                if children_of(proc.pid):
                    return server
            time.sleep(0.05)
        last_error = server.log_tail() + log_path.read_text(errors="replace")
        server.stop()
    raise RuntimeError(f"nginx did not start:\n{last_error}")

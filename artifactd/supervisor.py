"""`--workers N`: N server processes sharing one port through SO_REUSEPORT, supervised.

The supervisor starts the workers, prints one readiness line when all of them listen,
restarts a worker that dies (with a back-off against crash loops), and on SIGTERM/SIGINT
passes the signal on and waits for every worker to drain. What is per process: the SSE
event log (a client sees the events of the worker it is connected to) and in-memory
caches; metrics are aggregated over all workers; one worker evicts at a time (the store's
maintenance lock).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.context import SpawnProcess

from artifactd.metricsdir import metrics_directory
from artifactd.runner import configure_logging
from artifactd.server import serve, translated_bind_errors
from artifactd.settings import Settings

log = logging.getLogger("artifactd.supervisor")

READY_TIMEOUT_SECONDS = 60.0
# A worker that dies sooner than this after starting is crash-looping: wait before retrying.
MIN_HEALTHY_SECONDS = 5.0
MAX_RESTART_DELAY_SECONDS = 10.0


def _worker_main(
    settings: Settings, ready: multiprocessing.connection.Connection, supervisor_pid: int
) -> None:
    """Entry point of a worker process (spawned, so it starts from a clean interpreter)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    stop_when_orphaned(supervisor_pid)
    serve(settings, announce=ready.send, reuse_port=True)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def stop_when_orphaned(supervisor_pid: int) -> None:
    """Have the kernel send this worker SIGTERM (a graceful drain) when its supervisor dies,
    even by SIGKILL: an orphaned worker would go on holding the port, serving requests no
    supervisor restarts or stops. Checked once more after asking, in case the supervisor
    died in between."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Worker:
    number: int
    process: SpawnProcess
    ready: multiprocessing.connection.Connection
    started_at: float
    restarts: int = 0


class Supervisor:
    def __init__(self, settings: Settings, announce: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.announce = announce
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, Worker] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        configure_logging(self.settings.log_format)
        with metrics_directory() as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by every worker
            self._serve_workers()

    def _serve_workers(self) -> None:
        previous = {
            signum: signal.signal(signum, lambda *_: self.stopping.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            with _reserved_port(self.settings.host, self.settings.port) as port:
                self.settings = replace(self.settings, port=port)
                for number in range(1, self.settings.workers + 1):
                    self.workers[number] = self._start(number)
                self._wait_until_ready()
            self.announce(
                f"artifactd listening on http://{_display_host(self.settings.host)}:{port}/ "
                f"(root {os.path.realpath(self.settings.root)}, {len(self.workers)} workers)"
            )
            sys.stdout.flush()
            self._supervise()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _start(self, number: int, restarts: int = 0) -> Worker:
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main,
            args=(self.settings, sender, os.getpid()),
            name=f"artifactd-worker-{number}",
        )
        process.start()
        sender.close()
        log.info("worker %d started (pid %s)", number, process.pid)
        return Worker(number, process, receiver, time.monotonic(), restarts)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for worker in self.workers.values():
            remaining = max(0.0, deadline - time.monotonic())
            if not worker.ready.poll(remaining):
                raise RuntimeError(f"worker {worker.number} did not start listening")
            worker.ready.recv()

    def _supervise(self) -> None:
        """Restart workers that die, until a stop signal arrives."""
        while not self.stopping.is_set():
            sentinels = [w.process.sentinel for w in self.workers.values()]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            for number, worker in list(self.workers.items()):
                if worker.process.is_alive() or self.stopping.is_set():
                    continue
                self._mark_dead(worker)
                lived = time.monotonic() - worker.started_at
                log.error(
                    "worker %d (pid %s) exited with code %s after %.1fs; restarting",
                    number,
                    worker.process.pid,
                    worker.process.exitcode,
                    lived,
                )
                if lived < MIN_HEALTHY_SECONDS:
                    delay = min(MAX_RESTART_DELAY_SECONDS, 0.5 * 2**worker.restarts)
                    if self.stopping.wait(delay):
                        return
                restarts = worker.restarts + 1 if lived < MIN_HEALTHY_SECONDS else 0
                self.workers[number] = self._start(number, restarts)

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for them to drain, kill what outlives the timeout."""
        alive = [w for w in self.workers.values() if w.process.is_alive()]
        log.info("stopping %d workers", len(alive))
        for worker in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + 5
        for worker in alive:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker %d did not stop in time; killing it", worker.number)
                worker.process.kill()
                worker.process.join(5)
            self._mark_dead(worker)

    @staticmethod
    def _mark_dead(worker: Worker) -> None:
        from prometheus_client import multiprocess

        if worker.process.pid is not None:
            multiprocess.mark_process_dead(worker.process.pid)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _reserved_port(host: str, port: int):  # type: ignore[no-untyped-def]
    """Pick the port (resolving 0) and hold it, not listening, until the workers bind it.

    The holder binds without SO_REUSEPORT, so the bind fails (EADDRINUSE) while any other
    socket holds the port, another artifactd's workers included: with SO_REUSEPORT set
    before the bind, a second `serve --workers N` on the same port would start too and the
    kernel would split requests between two stores. Set after the bind, SO_REUSEPORT lets
    this supervisor's own workers join the port (Linux checks it at each later bind), while
    every later exclusive bind, such as another supervisor's holder, still fails.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    try:
        with translated_bind_errors(host, port):
            holder.bind((host, port))
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        yield holder.getsockname()[1]
    finally:
        holder.close()


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(settings: Settings) -> None:
    Supervisor(settings).run()

"""This machine: which CPUs to pin to, how busy each core was, timer interrupts, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.servers import CLK_TCK, find_tool, nginx_version


def choose_cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def core_busy_seconds(cores: list[int]) -> dict[int, float]:
    """Non-idle time of each of these CPUs so far, from /proc/stat (every process on it)."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            ticks = [int(f) for f in fields[:8]]
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK
    return busy


def timer_interrupts(cpu: int) -> int | None:
    """Local timer interrupts on this CPU so far (/proc/interrupts, LOC). Per request they
    show TCP pacing: with BBR on loopback every paced burst is a timer on the CPU that sent
    it (docs/performance.md, "1 MiB files and TCP pacing")."""
    try:
        lines = Path("/proc/interrupts").read_text().splitlines()
    except OSError:
        return None
    columns = lines[0].split()  # CPU0 CPU1 ...
    name = f"CPU{cpu}"
    if name not in columns:
        return None
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[0] == "LOC:":
            return int(fields[1 + columns.index(name)])
    return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "aiohttp": importlib.metadata.version("aiohttp"),
        "uvloop": importlib.metadata.version("uvloop"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }
    for section, setting in (("ipv4", "tcp_congestion_control"), ("core", "default_qdisc")):
        try:
            info[setting] = Path(f"/proc/sys/net/{section}/{setting}").read_text().strip()
        except OSError:
            info[setting] = None
    nginx = find_tool("nginx")
    info["nginx"] = nginx_version(nginx) if nginx else None
    for tool in ("wrk", "curl"):
        path = find_tool(tool)
        if path is None:
            info[tool] = None
            continue
        flag = "-v" if tool == "wrk" else "--version"
        out = subprocess.run([path, flag], capture_output=True, text=True, timeout=10, check=False)
        info[tool] = (
            (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else path
        )
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu_model"] = model
    except (OSError, StopIteration):
        pass
    return info

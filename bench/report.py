"""The report of a run: Markdown tables, notes on what may have skewed it, the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.config import (
    BASELINES,
    METRIC_BY_KEY,
    METRICS,
    REFERENCE,
    SERVER_TITLES,
    Config,
    fmt,
    fmt_ratio,
    human_size,
    metric_title,
)
from bench.keyloads import per_request_table
from bench.results import Results
from bench.servers import Server


def render_tables(cfg: Config, results: Results, servers: list[str]) -> str:
    bases = [b for b in BASELINES if b in servers or b != REFERENCE]
    lines = [
        "| workload | server | median | min–max | n (disturbed) | "
        + " | ".join(f"× {BASELINES[b]}" for b in bases)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(bases),
    ]
    for metric in METRICS:
        by_server = results.samples.get(metric.key)
        if not by_server:
            continue
        better = "higher" if metric.higher_is_better else "lower"
        title = f"{metric_title(metric, cfg)} ({metric.unit}, {better} is better)"
        first = True
        for server in servers:
            values = by_server.get(server)
            if not values:
                continue
            ratios = [
                "" if server == base else fmt_ratio(results.ratio(metric.key, server, base))
                for base in bases
            ]
            lines.append(
                f"| {title if first else ''} | {SERVER_TITLES.get(server, server)} | "
                f"{fmt(statistics.median(values), metric)} | "
                f"{fmt(min(values), metric)}–{fmt(max(values), metric)} | {len(values)}"
                f"{disturbed_text(results.disturbed(metric.key, server, cfg.quiet_threshold))} | "
                + " | ".join(ratios)
                + " |"
            )
            first = False
    lines += ["", diagnostics_table(cfg, results, servers)]
    lines += ["", per_request_table(results, servers, SERVER_TITLES)]
    return "\n".join(lines)


def disturbed_text(count: int) -> str:
    return f" ({count})" if count else ""


def diagnostics_table(cfg: Config, results: Results, servers: list[str]) -> str:
    """Medians of latency and of how busy server and client were during the wrk phases."""
    lines = [
        "| wrk workload | server | p50 ms | p99 ms | server process CPU | server core busy "
        "| wrk process CPU | client core busy | server-core timer IRQs per request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    titles = {"small": "small_rps", "medium": "medium_gbps", "ranges": "ranges_rps"}
    titles |= {"put_4k": "put_4k_rps", "put_64k": "put_64k_rps"}
    for phase, metric_key in titles.items():
        by_server = results.details.get(phase, {})
        first = True
        for server in servers:
            runs = by_server.get(server)
            if not runs:
                continue

            def med(key: str, runs: list[dict[str, Any]] = runs) -> str:
                values = [float(r[key]) for r in runs if r.get(key) is not None]
                return f"{statistics.median(values):.0%}" if values else "–"

            timers = [
                float(r["server_core_timer_irqs_per_request"])
                for r in runs
                if r.get("server_core_timer_irqs_per_request") is not None
            ]
            timers_text = f"{statistics.median(timers):.2f}" if timers else "–"

            p50 = statistics.median(r["latency_us"]["p50"] for r in runs) / 1000
            p99 = statistics.median(r["latency_us"]["p99"] for r in runs) / 1000
            title = metric_title(METRIC_BY_KEY[metric_key], cfg) if first else ""
            lines.append(
                f"| {title} | {SERVER_TITLES.get(server, server)} | {p50:.2f} | {p99:.2f} | "
                f"{med('server_cpu_busy')} | {med('server_core_busy')} | "
                f"{med('client_cpu_busy')} | {med('client_core_busy')} | {timers_text} |"
            )
            first = False
    return "\n".join(lines)


def note_pacing(results: Results, machine: dict[str, Any]) -> None:
    """BBR paces every TCP socket with timers when the loopback has no fq qdisc; on this VM
    those timers moved the 1 MiB workload between two speeds (docs/performance.md)."""
    if machine.get("tcp_congestion_control") == "bbr":
        results.notes.append(
            "TCP congestion control is bbr: it paces each connection with timers, which fire "
            "on the core that sent (see 'server-core timer IRQs per request'); where the "
            "server's core takes them, the 1 MiB workload runs at about half speed"
        )


def note_quick_scale(cfg: Config, results: Results) -> None:
    """The targets are set for the full scale: a 64 MiB stream, say, is too short to judge
    a large-file target by."""
    if cfg.scale_name == "full":
        return
    rounds = cfg.scale.rounds
    results.notes.append(
        f"a quick run (scale {cfg.scale_name}: large file {human_size(cfg.scale.large)}, "
        f"{rounds} round{'s' if rounds != 1 else ''}): the targets are set for the full "
        "scale (`make bench`); short transfers and few samples make these verdicts "
        "indicative only"
    )


def note_noise(cfg: Config, results: Results) -> None:
    """Say how much of the run other processes disturbed (this machine may be shared)."""
    if cfg.quiet_threshold <= 0:
        return
    total = sum(len(v) for by in results.foreign.values() for v in by.values())
    disturbed = sum(
        results.disturbed(metric, server, cfg.quiet_threshold)
        for metric, by in results.foreign.items()
        for server in by
    )
    worst = max((f for by in results.foreign.values() for v in by.values() for f in v), default=0)
    results.notes.append(
        f"other processes on this machine: {disturbed} of {total} samples ran while they used "
        f"≥ {cfg.quiet_threshold:g} cores (worst {worst:.2f} cores; 'disturbed' in the table); "
        f"the harness waited {results.quiet_waited:.0f}s in all for quiet before phases"
    )


def results_document(
    cfg: Config,
    results: Results,
    servers: list[Server],
    machine: dict[str, Any],
    targets: list[dict[str, Any]],
    started_at: dt.datetime,
    elapsed: float,
    argv: list[str],
) -> dict[str, Any]:
    """Everything about the run, for bench-results/*.json."""
    names = [srv.name for srv in servers]
    return {
        "started_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "elapsed_s": round(elapsed, 1),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.harness", *argv]),
        "scale": cfg.scale_name,
        "config": {
            **{k: v for k, v in cfg.scale.__dict__.items()},
            "servers": names,
            "workloads": cfg.phases,
            "slow": cfg.slow.__dict__,
            "server_cpu": cfg.server_cpu,
            "client_cpu": cfg.client_cpu,
        },
        "machine": machine,
        "servers": {srv.name: srv.description for srv in servers},
        "metrics": {
            m.key: {
                "title": metric_title(m, cfg),
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
            }
            for m in METRICS
        },
        "summary": results.summary(),
        "ratios": {
            metric: {
                server: {base: results.ratio(metric, server, base) for base in BASELINES}
                for server in by_server
            }
            for metric, by_server in results.samples.items()
        },
        "targets": targets,
        "upload_ceilings_gbps": results.upload_ceilings,
        "samples": results.samples,
        "foreign_cores": results.foreign,
        "details": results.details,
        "notes": results.notes,
        "errors": results.errors,
    }


def write_results(
    cfg: Config, document: dict[str, Any], started_at: dt.datetime, tables: str, notes: list[str]
) -> None:
    """The JSON document as <stamp>-<scale>.json and latest.json, the tables as latest.md."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=2, default=str)
    (cfg.out_dir / f"{stamp}-{cfg.scale_name}.json").write_text(text)
    (cfg.out_dir / "latest.json").write_text(text)
    (cfg.out_dir / "latest.md").write_text(tables + "".join(f"- {n}\n" for n in notes))

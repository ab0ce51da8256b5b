"""The performance targets: each a metric's median against a baseline's, or a bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.config import (
    BASELINES,
    DUCKTORS,
    FLOOR,
    FLOOR_META,
    FLOOR_NO_FSYNC,
    LOW_LEVEL_FLOOR,
    METRIC_BY_KEY,
    fmt,
    fmt_ratio,
)
from bench.results import Results


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    metric: str
    baseline: str | None  # None: absolute threshold
    threshold: float
    at_most: bool  # value (or ratio) must be <= threshold
    baseline_metric: str | None = None  # another metric of the same server as the baseline


TARGETS = (
    Target(
        "large_cpu",
        "large files: server CPU per GiB ≤ 1.0× nginx",
        "large_cpu_s_per_gib",
        "nginx",
        1.0,
        True,
    ),
    Target(
        "large_throughput",
        "large files: throughput ≥ 0.95× nginx",
        "large_gbps",
        "nginx",
        0.95,
        False,
    ),
    Target(
        "medium_throughput",
        "1 MiB files: throughput ≥ 1.2× nginx",
        "medium_gbps",
        "nginx",
        1.2,
        False,
    ),
    Target(
        "small_rps",
        "4 KiB files: req/s ≥ 2.5× aiohttp FileResponse",
        "small_rps",
        "aiohttp",
        2.5,
        False,
    ),
    Target(
        "ranges_rps",
        "random 64 KiB ranges: req/s ≥ 2.5× aiohttp FileResponse",
        "ranges_rps",
        "aiohttp",
        2.5,
        False,
    ),
    Target(
        "slow_rss", "500 slow downloads: peak RSS ≤ 64 MiB", "slow_peak_rss_mib", None, 64.0, True
    ),
    Target(
        "slow_rss_growth",
        "500 slow downloads: no RSS growth with file size (≤ 1.1×)",
        "slow_peak_rss_mib",
        "growth",
        1.1,
        True,
    ),
    Target(
        "put_4k",
        "4 KiB durable PUTs to new paths: req/s ≥ 0.5× nginx WebDAV PUT (not durable)",
        "put_4k_rps",
        "nginx",
        0.5,
        False,
    ),
    Target(
        "put_64k",
        "64 KiB durable PUTs to new paths: req/s ≥ 0.5× nginx WebDAV PUT (not durable)",
        "put_64k_rps",
        "nginx",
        0.5,
        False,
    ),
    Target(
        "upload",
        "uploads: curl -T 1 GiB ≥ 1 GB/s including hashing",
        "upload_gbps",
        None,
        1.0,
        False,
    ),
    Target(
        "random_keys_hot",
        "random keys: req/s ≥ 0.6× one hot path (artifactd's own)",
        "random_keys_rps",
        "artifactd",
        0.6,
        False,
        baseline_metric="random_hot_rps",
    ),
    Target(
        "random_keys_nginx",
        "random keys: req/s ≥ 0.3× nginx on the same keys",
        "random_keys_rps",
        "nginx",
        0.3,
        False,
    ),
    Target(
        "cache_mix_nginx",
        "cache mix via /files/: req/s ≥ 0.5× nginx WebDAV",
        "cache_mix_rps",
        "nginx",
        0.5,
        False,
    ),
    Target(
        "cache_mix_ducktors",
        "cache mix via the Turborepo API: req/s ≥ 1.5× ducktors' turborepo-remote-cache",
        "cache_mix_turbo_rps",
        DUCKTORS,
        1.5,
        False,
    ),
)


CPU_PER_REQUEST = "server_cpu_us_per_request"  # in the small-object phases' details
# The floors whose ratio to a target's baseline is printed beside it: row key, server, label.
FLOOR_COLUMNS = (
    ("ceiling", FLOOR, "aiohttp floor"),
    ("low_level_ceiling", LOW_LEVEL_FLOOR, "low-level"),
    ("no_fsync_ceiling", FLOOR_NO_FSYNC, "without fsync"),
    ("meta_ceiling", FLOOR_META, "with durable metadata"),
)


def floors_text(
    results: Results, target: Target, row: dict[str, Any], server: str = "artifactd"
) -> str:
    """The aiohttp floors' ratios to the target's baseline (measured ceilings for artifactd
    on aiohttp), set in `row`; for the PUT targets with their rates, the floor's PUT being
    durable as artifactd's (bench/floor_put.py). Where the phase records it, the server CPU
    per request of artifactd and of each floor too: on a shared machine req/s also
    measures how much of its core each server was left, CPU per request does not."""
    assert target.baseline is not None
    metric = METRIC_BY_KEY[target.metric]
    put = target.metric.startswith("put_")
    phase = target.metric.removesuffix("_rps")
    parts, cpu = [], []
    own_cpu = results.detail_median(phase, server, CPU_PER_REQUEST)
    for key, floor, label in FLOOR_COLUMNS:
        ratio = results.ratio(target.metric, floor, target.baseline)
        if ratio is None:
            continue
        row[key] = ratio
        ratio_text = f"{fmt_ratio(ratio)} {target.baseline}"
        if put:
            label = "aiohttp floor (durable PUT)" if floor == FLOOR else label
            rate = fmt(results.median(target.metric, floor), metric)
            parts.append(f"{label} {rate} {metric.unit} = {ratio_text}")
        else:
            parts.append(f"{label} {ratio_text}")
        floor_cpu = results.detail_median(phase, floor, CPU_PER_REQUEST)
        if floor_cpu is not None and own_cpu is not None:
            row[f"{key}_cpu_us"] = floor_cpu
            cpu.append(f"{label.removeprefix('aiohttp ')} {floor_cpu:,.0f}")
    text = "; " + ", ".join(parts) if parts else ""
    if cpu:
        row["cpu_us"] = own_cpu
        text += f"; server CPU per request (µs): {server} {own_cpu:,.0f}, " + ", ".join(cpu)
    return text


def evaluate_targets(results: Results, server: str = "artifactd") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for target in TARGETS:
        metric = METRIC_BY_KEY[target.metric]
        value = results.median(target.metric, server)
        row: dict[str, Any] = {
            "key": target.key,
            "target": target.title,
            "metric": target.metric,
            "value": value,
            "threshold": target.threshold,
            "baseline": target.baseline,
        }
        if target.baseline_metric is not None:
            base = results.median(target.baseline_metric, server)
            compared = value / base if value is not None and base else None
            baseline_title = METRIC_BY_KEY[target.baseline_metric].title.split(" (")[0]
            detail = f"{fmt(value, metric)} vs {fmt(base, metric)} {metric.unit} ({baseline_title})"
        elif target.baseline == "growth":
            base = results.median("growth_peak_rss_mib", server)
            compared = value / base if value is not None and base else None
            detail = (
                f"{fmt(value, metric)} MiB with the large file vs {fmt(base, metric)} MiB "
                f"with the smaller one"
            )
        elif target.baseline is not None:
            base = results.median(target.metric, target.baseline)
            compared = results.ratio(target.metric, server, target.baseline)
            detail = (
                f"{fmt(value, metric)} vs {fmt(base, metric)} {metric.unit} "
                f"({BASELINES.get(target.baseline, target.baseline)})"
            )
            detail += floors_text(results, target, row, server)
            if target.metric.startswith("put_") and results.durable_files_per_s:
                row["durable_files_per_s"] = results.durable_files_per_s
                detail += (
                    f"; this disk makes {results.durable_files_per_s:,.0f} new files/s durable "
                    "(bench/fsync_ceiling.py, 16 writers)"
                )
                if base:
                    row["durable_files_ratio"] = results.durable_files_per_s / base
                    detail += f" = {fmt_ratio(row['durable_files_ratio'])} {target.baseline}"
        else:
            base, compared = None, value
            detail = f"{fmt(value, metric)} {metric.unit}"
            if target.key == "upload":
                cpu = results.median("upload_cpu_s_per_gib", server)
                detail += f", server CPU {fmt(cpu, METRIC_BY_KEY['upload_cpu_s_per_gib'])} s/GiB"
                if results.upload_ceilings:
                    row["ceiling"] = min(results.upload_ceilings.values())
                    detail += "; this machine: " + ", ".join(
                        f"{name} {gbps:.2f} GB/s" for name, gbps in results.upload_ceilings.items()
                    )
        row["baseline_value"] = base
        row["compared"] = compared
        if compared is None:
            row["verdict"] = "SKIP"
        else:
            ok = compared <= target.threshold if target.at_most else compared >= target.threshold
            row["verdict"] = "PASS" if ok else "FAIL"
        row["detail"] = detail
        row["ratio_text"] = (
            "–"
            if compared is None
            else (fmt_ratio(compared) if target.baseline is not None else fmt(compared, metric))
        )
        rows.append(row)
    return rows


def render_targets(rows: list[dict[str, Any]]) -> str:
    lines = ["| target (artifactd, default config) | measured | ratio or value | verdict |"]
    lines.append("|---|---|---:|---|")
    for row in rows:
        lines.append(
            f"| {row['target']} | {row['detail']} | {row['ratio_text']} | {row['verdict']} |"
        )
    return "\n".join(lines)

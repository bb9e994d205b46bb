"""The reporting half of bench/serve_bench.py: the markdown tables, the summary and the targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from bench.serve_measure import Ceiling, MiB, ServerRun


def render(ceiling: Ceiling, service: ServerRun, naive: ServerRun | None, header: Sequence[str]) -> str:
    """The markdown report: context, ceiling table, load table, summary."""
    lines = [
        *header,
        "",
        "### Ceiling: in-process `Predictor.predict_batch` (decode + preprocess + forward)",
        "",
    ]
    lines += ceiling_table(ceiling)
    lines += ["", "### Load: closed loop from a separate client process", ""]
    lines += [
        "| server | clients | req/s | p50 ms | p95 ms | p99 ms | errors | ÷ ceiling | service ÷ naive "
        "| server CPU (cores) | client CPU (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    naive_levels = {lvl["concurrency"]: lvl for lvl in naive.levels} if naive else {}
    runs = [run for run in (service, naive) if run is not None]
    for run in runs:
        for lvl in run.levels:
            other = naive_levels.get(lvl["concurrency"]) if run is service else None
            vs_naive = (
                f"{lvl['throughput'] / other['throughput']:.2f}" if other and other["throughput"] else "—"
            )
            lines.append(
                f"| {run.name} | {lvl['concurrency']} | {lvl['throughput']:.1f} | {lvl['p50_ms']:.1f} "
                f"| {lvl['p95_ms']:.1f} | {lvl['p99_ms']:.1f} | {lvl['errors']} "
                f"| {lvl['throughput'] / ceiling.reference:.2f} | {vs_naive} "
                f"| {lvl['server_cores']:.2f} | {lvl['client_cores']:.2f} |"
            )
    lines += cpu_by_thread_table(runs)
    best = ceiling.best
    lines += ["", "### Summary", ""]
    again = ceiling.best_again
    lines.append(
        f"- ceiling: {best.throughput:.1f} items/s at batch {best.batch_size}, {best.callers} caller(s) with "
        f"{best.threads} torch thread(s) each"
        + (f"; {again.throughput:.1f} measured again after the service's load levels" if again else "")
        + f"; reference (mean): {ceiling.reference:.1f} items/s"
    )
    if ceiling.single is not None:
        single_again = ceiling.single_again
        lines.append(
            f"- single-item latency (median of batch-1 calls, 1 caller, {ceiling.single.threads} torch "
            f"thread(s)): {ceiling.single.batch_p50_ms:.1f} ms"
            + (f"; {single_again.batch_p50_ms:.1f} ms measured again" if single_again else "")
            + f"; reference (mean): {ceiling.single_item_ms:.1f} ms"
        )
    one = ceiling.best_one_caller
    if one is not None and one is not best:
        at32 = next((lvl for lvl in service.levels if lvl["concurrency"] == 32), None)
        lines.append(
            f"- ceiling with one caller only: {one.throughput:.1f} items/s at batch {one.batch_size} with "
            f"{one.threads} torch thread(s)"
            + (f"; service at 32 clients ÷ that: {at32['throughput'] / one.throughput:.2f}" if at32 else "")
        )
    single = next((lvl for lvl in service.levels if lvl["concurrency"] == 1), None)
    if single is not None:
        lines.append(
            "- service p50 at 1 client minus ceiling single-item latency: "
            f"{single['p50_ms'] - ceiling.single_item_ms:+.1f} ms"
        )
    for run in runs:
        lines.append(
            f"- {run.name}: ready {run.ready_s:.1f} s after start; RSS {run.rss_ready / MiB:.0f} MiB when "
            f"ready, {run.rss_after_sweep / MiB:.0f} MiB after the load levels"
        )
        if run.rss_phase:
            p = run.rss_phase
            lines.append(
                f"- {run.name} RSS over {p['requests']} more requests at {p['concurrency']} clients: "
                f"{p['rss_before'] / MiB:.0f} -> {p['rss_after'] / MiB:.0f} MiB ({p['growth_pct']:+.1f}%), "
                f"{p['throughput']:.1f} req/s, {p['errors']} errors; RSS after each quarter: "
                + ", ".join(f"{rss / MiB:.0f}" for _, rss in p["trace"][1:])
                + " MiB"
            )
    return "\n".join([*lines, "", "### Targets of issue 6", "", *target_lines(ceiling, service, naive)])


def cpu_by_thread_table(runs: Sequence[ServerRun]) -> list[str]:
    """Busy cores per server thread group at each load level (the service names its threads)."""
    groups = ("inference", "decode", "event loop", "other")
    lines = [
        "",
        "### Where the server's CPU goes: busy cores per thread group over each client run",
        "",
        "`event loop` is the main thread (HTTP, multipart, responses, logging, metrics); `other` is every",
        "thread the service does not name (ONNX Runtime / torch pools, the default executor).",
        "",
        "| server | clients | " + " | ".join(groups) + " | total |",
        "|---|---:|" + "---:|" * (len(groups) + 1),
    ]
    for run in runs:
        for lvl in run.levels:
            by_thread = lvl["server_cores_by_thread"]
            cells = " | ".join(f"{by_thread[group]:.2f}" for group in groups)
            lines.append(f"| {run.name} | {lvl['concurrency']} | {cells} | {lvl['server_cores']:.2f} |")
    return lines


def ceiling_table(ceiling: Ceiling) -> list[str]:
    """Markdown rows of every ceiling setting, the best one marked (threads: torch or ONNX intra-op)."""
    lines = ["| callers | threads | batch | items/s | batch p50 ms |", "|---:|---:|---:|---:|---:|"]
    for row in ceiling.rows:
        mark = " **best**" if row is ceiling.best else ""
        lines.append(
            f"| {row.callers} | {row.threads} | {row.batch_size} | {row.throughput:.1f}{mark} "
            f"| {row.batch_p50_ms:.1f} |"
        )
    return lines


def runtime_comparison(
    ceiling: Ceiling, torch_ceiling: Ceiling, service: ServerRun, runtime: str
) -> list[str]:
    """The torch ceiling's rows, and the ONNX ceiling and service as ratios of it (issue 13's bars)."""
    lines = [f"### Torch eager ceiling, for comparison with {runtime}", "", *ceiling_table(torch_ceiling)]
    levels = {lvl["concurrency"]: lvl for lvl in service.levels}
    best, torch_best = ceiling.best.throughput, torch_ceiling.best.throughput
    single, torch_single = ceiling.single_item_ms, torch_ceiling.single_item_ms
    lines += [
        "",
        f"- {runtime} ceiling ÷ torch ceiling (best rows): {best:.1f} ÷ {torch_best:.1f} items/s "
        f"= {best / torch_best:.2f}",
        f"- single item, {runtime} ÷ torch: {single:.1f} ÷ {torch_single:.1f} ms "
        f"= {single / torch_single:.2f}",
    ]
    if 32 in levels:
        ratio = levels[32]["throughput"] / ceiling.reference
        lines.append(f"- service on {runtime} at 32 clients ÷ {runtime} ceiling: {ratio:.2f}")
    return lines


def target_lines(ceiling: Ceiling, service: ServerRun, naive: ServerRun | None) -> list[str]:
    """Each "done when" criterion with the measured value and PASS / FAIL (or n/a when not measured)."""
    levels = {lvl["concurrency"]: lvl for lvl in service.levels}
    naive_levels = {lvl["concurrency"]: lvl for lvl in naive.levels} if naive else {}
    at32, naive32, at1 = levels.get(32), naive_levels.get(32), levels.get(1)
    rss = service.rss_phase
    naive_ratio = None
    if at32 and naive32 and naive32["throughput"]:
        naive_ratio = at32["throughput"] / naive32["throughput"]
    checks: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        (
            "service at 32 clients >= 0.85 x ceiling",
            at32["throughput"] / ceiling.reference if at32 else None,
            lambda v: v >= 0.85,
            "{:.2f} x",
        ),
        ("service at 32 clients >= 1.5 x naive", naive_ratio, lambda v: v >= 1.5, "{:.2f} x"),
        (
            "p50 at 1 client within 3 ms of the single-item latency",
            at1["p50_ms"] - ceiling.single_item_ms if at1 else None,
            lambda v: v <= 3.0,
            "{:+.1f} ms",
        ),
        (
            f"RSS grows < 5% over {rss['requests'] if rss else 'N'} requests",
            rss["growth_pct"] if rss else None,
            lambda v: v < 5.0,
            "{:+.1f}%",
        ),
        ("ready within 10 s of start", service.ready_s, lambda v: v <= 10.0, "{:.1f} s"),
    ]
    lines = []
    for name, value, passes, fmt in checks:
        if value is None or math.isnan(value):
            lines.append(f"- {name}: n/a")
        else:
            lines.append(f"- {name}: {fmt.format(value)} **{'PASS' if passes(value) else 'FAIL'}**")
    return lines

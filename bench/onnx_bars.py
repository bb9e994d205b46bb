"""Issue 13's serving bars: `serve_bench` run in pairs (ONNX, then torch), ratios taken within each pair.

    python -m bench.onnx_bars --data DEV.jsonl [--runs 3] [--rss-requests N] [--out DIR] [-- SERVE_BENCH ARGS]

Each run is a fresh `python -m bench.serve_bench` (its own ceiling processes and service). An ONNX run
measures the ONNX and the torch eager ceilings in one process, so their ratio is within one run; the
service on ONNX is compared with the service on torch of the same pair, run right after it. The first
ONNX run also sends `--rss-requests` more requests for the memory-growth check (the others 1,000).
Prints one line per pair and the medians against the bars; every run's JSON stays in `--out`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

CONCURRENCY = (1, 32)


def _level(run: dict[str, Any], clients: int) -> dict[str, Any]:
    return next(level for level in run["service"]["levels"] if level["concurrency"] == clients)


def _best(ceiling: dict[str, Any]) -> float:
    return max(row["throughput"] for row in ceiling["rows"])


def pair_figures(onnx: dict[str, Any], torch: dict[str, Any]) -> dict[str, float]:
    """The bar figures of one (ONNX run, torch run) pair."""
    return {
        "ceiling_ratio": _best(onnx["ceiling"]) / _best(onnx["torch_ceiling"]),
        "service_vs_ceiling": _level(onnx, 32)["throughput"] / onnx["ceiling"]["reference"],
        "service_vs_torch": _level(onnx, 32)["throughput"] / _level(torch, 32)["throughput"],
        "p50_1_onnx_ms": _level(onnx, 1)["p50_ms"],
        "p50_1_torch_ms": _level(torch, 1)["p50_ms"],
        "p50_ratio": _level(onnx, 1)["p50_ms"] / _level(torch, 1)["p50_ms"],
        "cores_1_onnx": _level(onnx, 1)["server_cores"],
        "cores_1_torch": _level(torch, 1)["server_cores"],
        "inference_cores_32_onnx": _level(onnx, 32)["server_cores_by_thread"]["inference"],
        "event_loop_cores_32_onnx": _level(onnx, 32)["server_cores_by_thread"]["event loop"],
        "onnx_32_rps": _level(onnx, 32)["throughput"],
        "torch_32_rps": _level(torch, 32)["throughput"],
        "ready_onnx_s": onnx["service"]["ready_s"],
        "ready_torch_s": torch["service"]["ready_s"],
        "rss_onnx_mib": max(onnx["service"]["rss_ready"], onnx["service"]["rss_after_sweep"]) / 2**20,
        "rss_torch_mib": max(torch["service"]["rss_ready"], torch["service"]["rss_after_sweep"]) / 2**20,
    }


BARS = (
    ("ceiling_ratio", "ONNX ceiling / torch eager ceiling (best rows, same process)", ">=", 1.5),
    ("service_vs_ceiling", "service on ONNX at 32 clients / ONNX ceiling", ">=", 0.9),
    ("service_vs_torch", "service on ONNX / service on torch, 32 clients", ">=", 1.4),
    ("p50_ratio", "p50 at 1 client, ONNX / torch", "<=", 0.7),
    ("ready_onnx_s", "ready after start, graph present (s)", "<=", 5.0),
)


def report(pairs: list[dict[str, float]], runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Markdown: every pair's figures, the medians against the bars, then the memory-growth runs."""
    keys = list(pairs[0])
    lines = ["| pair | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for i, figures in enumerate(pairs, 1):
        lines.append(f"| {i} | " + " | ".join(f"{figures[k]:.3g}" for k in keys) + " |")
    medians = {k: statistics.median(p[k] for p in pairs) for k in keys}
    lines.append("| median | " + " | ".join(f"{medians[k]:.3g}" for k in keys) + " |")
    lines += ["", f"Bars (median of {len(pairs)} pairs):"]
    for key, text, op, bar in BARS:
        value = medians[key]
        ok = value >= bar if op == ">=" else value <= bar
        lines.append(f"- {text}: {value:.3g} (bar {op} {bar:g}) **{'PASS' if ok else 'FAIL'}**")
    for name, run in (("onnx", runs[0][0]), ("torch", runs[0][1])):
        phase = run["service"]["rss_phase"]
        trace = ", ".join(f"{rss / 2**20:.0f}" for _, rss in phase["trace"])
        lines.append(
            f"- {name}: RSS over {phase['requests']} more requests at {phase['concurrency']} clients "
            f"{phase['rss_before'] / 2**20:.0f} -> {phase['rss_after'] / 2**20:.0f} MiB "
            f"({phase['growth_pct']:+.1f} %), {phase['errors']} errors; trace {trace} MiB"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the pairs and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss-requests", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("onnx-bars"))
    parser.add_argument("extra", nargs="*", help="more serve_bench arguments (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for i in range(1, args.runs + 1):
        pair = []
        for runtime in ("onnx", "torch"):
            out = args.out / f"{runtime}-{i}.json"
            cmd = [sys.executable, "-m", "bench.serve_bench", "--data", args.data, "--runtime", runtime]
            cmd += ["--concurrency", ",".join(map(str, CONCURRENCY)), "--skip-naive", "--json", str(out)]
            first_onnx = i == 1 and runtime == "onnx"
            cmd += ["--requests-for-rss", str(args.rss_requests if first_onnx else 1000), *args.extra]
            log = (args.out / f"{runtime}-{i}.md").open("w")
            print(f"[onnx_bars] pair {i}, {runtime}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, stdout=log)
            pair.append(json.loads(out.read_text()))
        runs.append((pair[0], pair[1]))
    print(report([pair_figures(o, t) for o, t in runs], runs))


if __name__ == "__main__":
    main()

"""Train the default recipe on DATA_DIR/train.jsonl, evaluate on DATA_DIR/dev.jsonl and print a quality table.

Usage: python -m bench.quality /path/to/mvsa-single [--cache-dir DIR] [--set key=value ...]

Without --cache-dir the feature cache starts cold (a fresh temporary directory), so the wall time
includes encoding every image and caption once. Rows that fail validation (MVSA-Single has 17
duplicate rows) are skipped and counted, exactly as a job with skip_invalid would.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.config import MODES, ModelConfig, TrainConfig
from model.datasets import load_dataset
from model.features import FeatureCache
from model.training import train

SCORES = ("accuracy", "weighted_f1", "macro_f1")


def _parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set m.fusion=concat --set epochs=20`: `m.` keys go to ModelConfig, the others to TrainConfig."""
    model_kw: dict[str, Any] = {}
    train_kw: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        value = json.loads(raw) if raw[:1] in "0123456789-[{tf" else raw
        (model_kw if key.startswith("m.") else train_kw)[key.removeprefix("m.")] = value
    return model_kw, train_kw


def metrics_table(metrics: dict) -> str:
    """Markdown table of accuracy / weighted F1 / macro F1 for fusion and the two masked-modality rows."""
    lines = ["| input | accuracy | weighted F1 | macro F1 |", "|---|---|---|---|"]
    for mode in MODES:
        report = metrics.get(mode)
        if report is not None:
            scores = " | ".join(f"{report[key]:.4f}" for key in SCORES)
            lines.append(f"| {mode.replace('_', '-')} | {scores} |")
    return "\n".join(lines)


def main() -> None:
    """Run the default recipe once and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cache-dir", type=Path, help="reuse a feature cache (default: cold, temporary)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--json", type=Path, help="also write the dev metrics here (for quality_service.py)")
    args = parser.parse_args()
    model_kw, train_kw = _parse_overrides(args.set)

    warm = args.cache_dir is not None and args.cache_dir.is_dir() and any(args.cache_dir.iterdir())
    started = time.monotonic()
    train_set = load_dataset(args.data_dir, split="train", skip_invalid=True)
    dev_set = load_dataset(args.data_dir, split="dev", labels=train_set.labels, skip_invalid=True)
    with tempfile.TemporaryDirectory(prefix="quality-cache-") as tmp:
        cache = FeatureCache(args.cache_dir or Path(tmp))
        result = train(
            replace(ModelConfig(), **model_kw),
            replace(TrainConfig(), **train_kw),
            train_set,
            dev_set,
            cache=cache,
        )
    wall = time.monotonic() - started
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    print(
        f"train: {len(train_set.samples)} samples ({train_set.skipped} skipped), dev: {len(dev_set.samples)}"
    )
    settings = f"model={model_kw or 'default'} train={train_kw or 'default'}"
    print(f"settings: {settings} best_epoch={result.best_epoch}")
    print()
    print(metrics_table(result.metrics))
    print()
    print(f"training wall time (loading + {'warm' if warm else 'cold'} cache + training): {wall:.1f} s")
    print(f"peak RSS: {peak_rss_gb:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps({mode: result.metrics.get(mode) for mode in MODES}, indent=1))


if __name__ == "__main__":
    main()

"""Quality figures: train on DATA_DIR/train.jsonl, early-stop on a slice of it, report on DATA_DIR/dev.jsonl.

Usage: python -m bench.quality /path/to/mvsa-single [--seeds 0,1,2] [--ablations] [--cv 5]
       [--cache-dir DIR] [--set key=value ...] [--json OUT]

The dev split is the untouched test split: it chooses nothing. Each seed carves its own stratified
validation slice (TrainConfig.val_fraction) out of train.jsonl, exactly as a job that names no
validation does, and early stopping picks the epoch on that slice. `--ablations` also trains real
unimodal models (the other encoder set to none) at every seed; `--cv K` runs stratified K-fold
cross-validation on train.jsonl. Without --cache-dir the feature cache starts cold, so the first
seed's wall time includes encoding every image and caption once; later seeds reuse the cache. Rows
that fail validation (MVSA-Single has 17 duplicate rows) are skipped and counted, as a job with
skip_invalid would.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.config import METRICS, MODES, ModelConfig, TrainConfig
from model.crossval import cross_validate
from model.datasets import Dataset, load_dataset
from model.evaluation import evaluate
from model.features import FeatureCache
from model.splits import split_dataset
from model.training import train

SCORES = ("accuracy", "weighted_f1", "macro_f1")
VARIANTS = {
    "fusion": {},
    "text model alone": {"image_encoder": "none"},
    "image model alone": {"text_encoder": "none"},
}


def parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set m.fusion=concat --set epochs=20`: `m.` keys go to ModelConfig, the others to TrainConfig."""
    model_kw: dict[str, Any] = {}
    train_kw: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:  # numbers, true / false, lists; anything else (finetune=text, m.fusion=sum) is a string
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        (model_kw if key.startswith("m.") else train_kw)[key.removeprefix("m.")] = value
    return model_kw, train_kw


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table of accuracy / weighted F1 / macro F1 for fusion and the two masked-modality rows."""
    lines = ["| input | accuracy | weighted F1 | macro F1 |", "|---|---|---|---|"]
    for mode in MODES:
        report = metrics.get(mode)
        if report is not None:
            scores = " | ".join(f"{report[key]:.4f}" for key in SCORES)
            lines.append(f"| {mode.replace('_', '-')} | {scores} |")
    return "\n".join(lines)


def run_seed(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train_set: Dataset,
    test_set: Dataset,
    cache: FeatureCache,
) -> dict[str, Any]:
    """One job's worth: carve the validation slice, train with early stopping on it, measure the test set."""
    fit_set, val_set = split_dataset(train_set, train_config.val_fraction, train_config.seed)
    started = time.monotonic()
    result = train(model_config, train_config, fit_set, val_set, cache=cache)
    wall = time.monotonic() - started
    test = evaluate(result.model, test_set, cache=cache)
    return {
        "seed": train_config.seed,
        "best_epoch": result.best_epoch,
        "val": result.metrics["fusion"],
        "test": test,
        "train_s": wall,
    }


def _row(name: str, runs: list[dict[str, Any]], mode: str = "fusion") -> str:
    cells = []
    for key in SCORES:
        values = [run["test"][mode][key] for run in runs]
        cells.append(f"{statistics.median(values):.4f} (min {min(values):.4f})")
    per_seed = " / ".join(f"{run['test'][mode]['accuracy']:.4f}" for run in runs)
    return f"| {name} | {per_seed} | " + " | ".join(cells) + " |"


def main() -> None:
    """Run the recipe over the seeds (and ablations / CV) and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--ablations", action="store_true", help="also train unimodal models at every seed")
    parser.add_argument("--cv", type=int, default=0, metavar="K", help="also K-fold cross-validate on train")
    parser.add_argument("--cache-dir", type=Path, help="reuse a feature cache (default: cold, temporary)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    model_kw, train_kw = parse_overrides(args.set)
    seeds = [int(s) for s in args.seeds.split(",")]

    warm = args.cache_dir is not None and args.cache_dir.is_dir() and any(args.cache_dir.iterdir())
    started = time.monotonic()
    train_set = load_dataset(args.data_dir, split="train", skip_invalid=True)
    test_set = load_dataset(args.data_dir, split="dev", labels=train_set.labels, skip_invalid=True)
    print(f"train: {len(train_set)} samples ({train_set.skipped} skipped), test (dev.jsonl): {len(test_set)}")
    print(f"settings: model={model_kw or 'default'} train={train_kw or 'default'}")
    out: dict[str, Any] = {"runs": {}, "cv": None}
    with tempfile.TemporaryDirectory(prefix="quality-cache-") as tmp:
        cache = FeatureCache(args.cache_dir or Path(tmp))
        variants = VARIANTS if args.ablations else {"fusion": {}}
        for name, change in variants.items():
            model_config = replace(ModelConfig(), **{**model_kw, **change})
            runs: list[dict[str, Any]] = []
            for seed in seeds:
                run = run_seed(
                    model_config, replace(TrainConfig(), **train_kw, seed=seed), train_set, test_set, cache
                )
                if not runs and name == "fusion":
                    run["first_wall_s"] = time.monotonic() - started
                    run["first_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
                    print(
                        f"first run (loading + {'warm' if warm else 'cold'} cache + training):"
                        f" {run['first_wall_s']:.1f} s, peak RSS {run['first_peak_rss_gb']:.2f} GB"
                    )
                test = run["test"]["fusion"]
                print(
                    f"{name} seed {seed}: best epoch {run['best_epoch']},"
                    f" val acc {run['val']['accuracy']:.4f}; test acc {test['accuracy']:.4f}"
                    f" wF1 {test['weighted_f1']:.4f} mF1 {test['macro_f1']:.4f}"
                    f" ({run['train_s']:.0f} s)",
                    flush=True,
                )
                runs.append(run)
            out["runs"][name] = runs
        if args.cv:
            model_config = replace(ModelConfig(), **model_kw)
            out["cv"] = cross_validate(
                model_config,
                replace(TrainConfig(), **train_kw, seed=seeds[0]),
                train_set,
                k=args.cv,
                cache=cache,
            )
    print()
    print("Test split (dev.jsonl, used for no decision): per-seed accuracy, then median (min) of each score")
    print()
    print("| model | accuracy per seed | accuracy | weighted F1 | macro F1 |")
    print("|---|---|---:|---:|---:|")
    fusion = out["runs"]["fusion"]
    print(_row("fusion", fusion))
    for mode in MODES[1:]:
        if fusion[0]["test"][mode] is not None:
            print(_row(f"fusion model, {mode.replace('_', '-')} (other modality masked)", fusion, mode))
    for name in list(out["runs"])[1:]:
        print(_row(name, out["runs"][name]))
    if args.ablations:
        beats = [
            all(
                f["test"]["fusion"]["accuracy"] > out["runs"][name][i]["test"]["fusion"]["accuracy"]
                for name in list(out["runs"])[1:]
            )
            for i, f in enumerate(fusion)
        ]
        print(f"\nfusion above each unimodal model at every seed: {all(beats)} ({beats})")
    if out["cv"] is not None:
        cv = out["cv"]
        print(f"\n{cv['k']}-fold cross-validation on train (seed {seeds[0]}): mean +/- std over folds")
        for mode in MODES:
            if cv["mean"][mode] is not None:
                cells = ", ".join(
                    f"{k} {cv['mean'][mode][k]:.4f} +/- {cv['std'][mode][k]:.4f}" for k in METRICS
                )
                print(f"- {mode}: {cells}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Paired cross-validation of training recipes on train.jsonl: is a change better than the folds' noise?

Usage: python -m bench.recipe_compare /path/to/mvsa-single --candidate "m.fusion=sum" [--candidate ...]
       [--base "key=value ..."] [--cv 5] [--repeats 2] [--first-repeat 0] [--cache-dir DIR] [--json OUT]

Every recipe runs `model.crossval.cross_validate` once per repeat r with seed r x k, so all of them are
measured on the same held-out folds, each fold trained with a seed of its own (the same for every recipe),
and a candidate's per-fold differences from the base are paired: the fold-to-fold spread (which data is
hard) cancels out, and each fold's training noise is its own, so the standard error counts it. (Before
session 14 every fold of a run shared one seed: one lucky initialisation then moved all of them alike, and
the standard error understated the noise.) A candidate counts as better when its mean accuracy difference
exceeds two standard errors of its paired differences. A recipe is written as `--set`-style pairs (`m.`
keys are ModelConfig fields, the others TrainConfig's); the base is the defaults unless `--base` says
otherwise. `--first-repeat R` starts at repeat R: a later run adds new, independent folds to an earlier
one's (pool the two `--json` files' fold lists with `paired_difference`). dev.jsonl is never read: this
chooses, it does not report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.quality import SCORES, parse_overrides
from model.config import ModelConfig, TrainConfig
from model.crossval import cross_validate
from model.datasets import Dataset, load_dataset
from model.features import FeatureCache


@dataclass(frozen=True)
class PairedDifference:
    """A candidate's per-fold differences from the base in one score: mean, standard error, folds up."""

    mean: float
    stderr: float
    up: int
    folds: int

    @property
    def better(self) -> bool:
        """The mean difference is more than two standard errors above zero."""
        return self.mean > 2 * self.stderr


def paired_difference(candidate: list[float], base: list[float]) -> PairedDifference:
    """The differences candidate - base fold by fold (the same folds, in the same order)."""
    if len(candidate) != len(base) or len(base) < 2:
        raise ValueError(f"folds: need the same two or more folds, got {len(candidate)} and {len(base)}")
    diffs = [c - b for c, b in zip(candidate, base, strict=True)]
    stderr = statistics.stdev(diffs) / len(diffs) ** 0.5
    return PairedDifference(statistics.fmean(diffs), stderr, sum(d > 0 for d in diffs), len(diffs))


def fold_scores(
    spec: str, dataset: Dataset, k: int, repeats: range, cache: FeatureCache
) -> dict[str, list[float]]:
    """Held-out fusion scores of every fold of the k-fold runs `repeats` of the recipe `spec`."""
    model_kw, train_kw = parse_overrides(spec.split())
    scores: dict[str, list[float]] = {key: [] for key in SCORES}
    for repeat in repeats:
        summary = cross_validate(
            replace(ModelConfig(), **model_kw),
            replace(TrainConfig(), **train_kw, seed=repeat * k),
            dataset,
            k=k,
            cache=cache,
        )
        for fold in summary["folds"]:
            for key in SCORES:
                scores[key].append(fold["fusion"][key])
    return scores


def paired_table(out: dict[str, dict[str, list[float]]], base_spec: str) -> str:
    """Markdown table of each recipe's mean scores and the others' paired differences from the base."""
    base = out[base_spec]
    lines = [
        "| recipe | CV accuracy | CV weighted F1 | CV macro F1 | accuracy vs base (+/- s.e.) | folds up |"
        " weighted F1 vs base | macro F1 vs base | better |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for spec, scores in out.items():
        means = " | ".join(f"{statistics.fmean(scores[key]):.4f}" for key in SCORES)
        if spec == base_spec:
            lines.append(f"| {spec or 'defaults'} (base) | {means} | | | | | |")
            continue
        diffs = {key: paired_difference(scores[key], base[key]) for key in SCORES}
        acc, wf1, mf1 = (diffs[key] for key in SCORES)
        lines.append(
            f"| {spec} | {means} | {acc.mean:+.4f} +/- {acc.stderr:.4f} | {acc.up}/{acc.folds} |"
            f" {wf1.mean:+.4f} | {mf1.mean:+.4f} | {'yes' if acc.better else 'no'} |"
        )
    return "\n".join(lines)


def add_cv_arguments(parser: argparse.ArgumentParser) -> None:
    """What every paired-CV script here takes: the data directory, --cv, --cache-dir and --json."""
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cv", type=int, default=5, metavar="K", help="folds per run (default 5)")
    parser.add_argument("--cache-dir", type=Path, help="reuse a feature cache (default: cold, temporary)")
    parser.add_argument("--json", type=Path, help="also write every fold's scores here")


def add_repeat_arguments(parser: argparse.ArgumentParser) -> None:
    """--repeats and --first-repeat: which k-fold runs (each with its own folds) a comparison pairs."""
    parser.add_argument(
        "--repeats", type=int, default=2, help="k-fold runs, each with its own folds (default 2)"
    )
    parser.add_argument(
        "--first-repeat", type=int, default=0, help="the first repeat's index, for new folds (default 0)"
    )


def report(out: dict[str, dict[str, list[float]]], base_spec: str, json_path: Path | None) -> None:
    """Print the paired table; write every recipe's fold scores to `json_path` when given."""
    print()
    print(paired_table(out, base_spec))
    if json_path:
        json_path.write_text(json.dumps(out, indent=1))


def main() -> None:
    """Cross-validate the base and every candidate on the same folds and print the paired table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cv_arguments(parser)
    parser.add_argument("--base", default="", help="the recipe compared against (default: the defaults)")
    parser.add_argument("--candidate", action="append", required=True, help="a recipe to compare")
    add_repeat_arguments(parser)
    args = parser.parse_args()
    repeats = range(args.first_repeat, args.first_repeat + args.repeats)
    dataset = load_dataset(args.data_dir, split="train", skip_invalid=True)
    print(
        f"train: {len(dataset)} samples ({dataset.skipped} skipped);"
        f" repeats {repeats.start}-{repeats.stop - 1} of {args.cv}-fold CV"
    )
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="compare-cache-") as tmp:
        cache = FeatureCache(args.cache_dir or Path(tmp))
        for spec in [args.base, *args.candidate]:
            out[spec] = fold_scores(spec, dataset, args.cv, repeats, cache)
            print(f"done: {spec or 'defaults'}", flush=True)
    report(out, args.base, args.json)


if __name__ == "__main__":
    main()

"""Pool the paired fold differences of several `bench.recipe_compare --json` files: one verdict, all folds.

Usage: python -m bench.recipe_pool --pair rc11.json "keep=last" "" --pair rc12.json "keep=last" "" [...]

Each `--pair FILE CANDIDATE BASE` takes the candidate's and the base's fold lists from one file, by the
recipe strings that run was given (`""` is a run's default base; a run whose base was another recipe names
it here). The folds of all pairs are concatenated in order and compared with `paired_difference`, so the
standard error counts every fold once. Prints, per score, the mean difference in points +/- its standard
error, the folds up, and whether the mean is above two standard errors.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.quality import SCORES
from bench.recipe_compare import PairedDifference, paired_difference


def pooled_differences(pairs: list[tuple[Path, str, str]]) -> dict[str, PairedDifference]:
    """Each score's paired difference over the folds of every (file, candidate, base) pair."""
    candidate: dict[str, list[float]] = {key: [] for key in SCORES}
    base: dict[str, list[float]] = {key: [] for key in SCORES}
    for path, cand_spec, base_spec in pairs:
        runs = json.loads(path.read_text())
        for spec in (cand_spec, base_spec):
            if spec not in runs:
                raise SystemExit(f"--pair: {path} has no recipe {spec!r}; it has {sorted(runs)}")
        for key in SCORES:
            candidate[key] += runs[cand_spec][key]
            base[key] += runs[base_spec][key]
    return {key: paired_difference(candidate[key], base[key]) for key in SCORES}


def main() -> None:
    """Print the pooled paired differences of the given pairs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pair",
        nargs=3,
        action="append",
        required=True,
        metavar=("FILE", "CANDIDATE", "BASE"),
        help="a recipe_compare --json file and the two recipes in it to pair",
    )
    args = parser.parse_args()
    pairs = [(Path(path), cand, base) for path, cand, base in args.pair]
    for key, diff in pooled_differences(pairs).items():
        print(
            f"{key}: {100 * diff.mean:+.2f} +/- {100 * diff.stderr:.2f} points"
            f" ({diff.up}/{diff.folds} folds up){', above 2 s.e.' if diff.better else ''}"
        )


if __name__ == "__main__":
    main()

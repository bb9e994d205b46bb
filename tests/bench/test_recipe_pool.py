"""bench.recipe_pool: fold lists of several recipe_compare files, paired and pooled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.recipe_compare import paired_difference
from bench.recipe_pool import pooled_differences


def _write(path: Path, runs: dict[str, list[float]]) -> Path:
    path.write_text(
        json.dumps(
            {
                spec: {key: acc for key in ("accuracy", "weighted_f1", "macro_f1")}
                for spec, acc in runs.items()
            }
        )
    )
    return path


def test_pairs_from_files_with_different_base_spellings_pool_fold_by_fold(tmp_path: Path) -> None:
    # One run compared the two recipes as candidates against a third base; the other ran one against "".
    first = _write(tmp_path / "a.json", {"": [0.5, 0.5], "lr=1": [0.71, 0.72], "lr=2": [0.70, 0.70]})
    second = _write(tmp_path / "b.json", {"": [0.60, 0.62, 0.64], "lr=1": [0.61, 0.64, 0.63]})
    pooled = pooled_differences([(first, "lr=1", "lr=2"), (second, "lr=1", "")])
    expected = paired_difference([0.71, 0.72, 0.61, 0.64, 0.63], [0.70, 0.70, 0.60, 0.62, 0.64])
    assert pooled["accuracy"] == expected == pooled["macro_f1"]
    assert (expected.up, expected.folds) == (4, 5)


def test_a_recipe_missing_from_its_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.json", {"": [0.5, 0.6]})
    with pytest.raises(SystemExit, match="has no recipe 'keep=last'"):
        pooled_differences([(path, "keep=last", "")])

"""bench.seed_ensemble: held-out probabilities of fine-tuned members, alone and averaged, on real JPEGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.seed_ensemble import compare, heldout_probabilities
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset
from model.evaluation import evaluate
from model.features import FeatureCache
from model.splits import kfold_datasets
from model.training import train


@pytest.fixture(scope="module")
def tweets(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Eight demo tweets per label (negative, positive): real JPEG files and captions."""
    return load_dataset(write_demo_dataset(tmp_path_factory.mktemp("ensemble"), n_per_class=8, seed=0))


def test_a_members_probabilities_predict_what_its_evaluation_scores(tweets: Dataset, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    fold_train, heldout = kfold_datasets(tweets, 2, 0)[0]
    model = train(ModelConfig(), TrainConfig(epochs=2), fold_train, None, cache=cache).model
    probabilities = heldout_probabilities(model, heldout, cache)
    assert probabilities.shape == (len(heldout), 2)
    assert probabilities.sum(dim=1).tolist() == pytest.approx([1.0] * len(heldout), abs=1e-5)
    truth = [model.labels.index(sample.label) for sample in heldout.samples]
    predicted = probabilities.argmax(dim=1).tolist()
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert accuracy == pytest.approx(evaluate(model, heldout, cache=cache)["fusion"]["accuracy"])


def test_the_member_and_the_ensemble_are_scored_on_the_same_folds(tweets: Dataset, tmp_path: Path) -> None:
    out = compare(tweets, 2, 2, 0, FeatureCache(tmp_path))
    assert list(out) == ["members=1", "members=2"]
    for scores in out.values():
        assert all(len(fold_scores) == 2 for fold_scores in scores.values())
        assert all(round(acc * 8, 6).is_integer() for acc in scores["accuracy"])  # 8 held out a fold

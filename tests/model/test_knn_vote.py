"""model.knn_vote: the vote matches a brute-force count over the nearest stored rows; a trained model stores
its fitted rows, mixes their vote into its predictions, and keeps both through a checkpoint and ONNX."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset
from model.evaluation import evaluate
from model.export import export_onnx
from model.features import FeatureCache
from model.knn_vote import KnnVote
from model.prepared_data import batch_features, prepare_data
from model.splits import split_dataset
from model.training import TrainResult, train


def _brute_force(
    keys: torch.Tensor, labels: torch.Tensor, query: torch.Tensor, k: int, tau: float
) -> torch.Tensor:
    keys, query = F.normalize(keys, dim=-1), F.normalize(query, dim=-1)
    out = torch.zeros(len(query), 3)
    for i, q in enumerate(query):
        sims = [(float(q @ key), int(label)) for key, label in zip(keys, labels, strict=True)]
        for sim, label in sorted(sims, reverse=True)[:k]:
            out[i, label] += torch.tensor(sim / tau).exp()
    return out / out.sum(dim=-1, keepdim=True)


def test_vote_is_the_weighted_count_of_the_nearest_rows_labels() -> None:
    torch.manual_seed(0)
    keys, labels, query = torch.randn(40, 8), torch.randint(0, 3, (40,)), torch.randn(5, 8)
    vote = KnnVote(3, weight=0.75, neighbours=16, temperature=0.1)
    vote.fill(keys, labels)
    torch.testing.assert_close(vote.vote(query), _brute_force(keys, labels, query, 16, 0.1))


def test_mix_is_weighted_and_an_empty_store_changes_nothing() -> None:
    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(4, 3), dim=-1)
    hidden = torch.randn(4, 8)
    vote = KnnVote(3, weight=0.75, neighbours=16, temperature=0.1)
    assert torch.equal(vote(hidden, probs), probs)
    vote.fill(torch.randn(10, 8), torch.randint(0, 3, (10,)))
    mixed = vote(hidden, probs)
    torch.testing.assert_close(mixed, 0.25 * probs + 0.75 * vote.vote(hidden))
    torch.testing.assert_close(mixed.sum(dim=-1), torch.ones(4))


def test_fewer_stored_rows_than_neighbours_vote_with_all_of_them() -> None:
    vote = KnnVote(3, weight=1.0, neighbours=16, temperature=0.1)
    vote.fill(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([2, 2]))
    torch.testing.assert_close(vote.vote(torch.tensor([[1.0, 1.0]])), torch.tensor([[0.0, 0.0, 1.0]]))


def test_fill_refuses_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="knn: need one label per stored vector"):
        KnnVote(3, 0.75, 16, 0.1).fill(torch.randn(3, 4), torch.tensor([0, 1]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Dataset, Dataset, FeatureCache]:
    """The default recipe with the vote, two epochs on demo tweets (real JPEGs), and its fit rows."""
    root = tmp_path_factory.mktemp("knn")
    dataset = load_dataset(write_demo_dataset(root / "data", n_per_class=10, seed=0))
    fit, stopping = split_dataset(dataset, 0.2, 0)
    cache = FeatureCache(root / "cache")
    result = train(ModelConfig(knn_weight=0.75), TrainConfig(epochs=2), fit, stopping, cache=cache)
    return result, fit, dataset, cache


def test_training_stores_the_fitted_rows_and_predictions_mix_their_vote(
    trained: tuple[TrainResult, Dataset, Dataset, FeatureCache],
) -> None:
    result, fit, dataset, cache = trained
    net = result.model
    assert net.knn is not None and net.knn.keys.shape == (len(fit), 256)
    assert net.knn.key_labels.argmax(dim=-1).tolist() == fit.label_indices()
    data = prepare_data(net, dataset, cache=cache)
    image, text = batch_features(net, data, list(range(len(data))), None)
    both = torch.ones(len(data), dtype=torch.bool)
    with torch.no_grad():
        plain = net.heads[0](image, text, both, both)
        voted = net.head(image, text, both, both).logits.softmax(dim=-1)
        image_only = net.head(image, None, both, ~both).logits
    assert plain.hidden is not None
    expected = 0.25 * plain.logits.softmax(dim=-1) + 0.75 * net.knn.vote(plain.hidden)
    torch.testing.assert_close(voted, expected)
    assert not torch.allclose(voted, plain.logits.softmax(dim=-1))
    # A row without its text gets no vote: the store holds rows that had both.
    torch.testing.assert_close(image_only, net.heads[0](image, None, both, ~both).logits)


def test_a_checkpoint_keeps_the_store_and_its_onnx_graph_votes_too(
    trained: tuple[TrainResult, Dataset, Dataset, FeatureCache], tmp_path: Path
) -> None:
    result, _, dataset, cache = trained
    path = save_checkpoint(
        tmp_path / "ck", result.model, metrics=result.metrics, dataset_fingerprint=dataset.fingerprint
    )
    loaded, _ = load_checkpoint(path)
    assert loaded.knn is not None and result.model.knn is not None
    assert torch.equal(loaded.knn.keys, result.model.knn.keys)
    assert evaluate(loaded, dataset, cache=cache) == evaluate(result.model, dataset, cache=cache)
    # The export checks the graph against torch on other shapes (model/export.py) and raises otherwise.
    assert export_onnx(path)["file"] == "model.onnx"


def test_the_vote_needs_one_fusion_head_and_older_configs_have_none() -> None:
    with pytest.raises(ValueError, match="knn_weight: the vote needs one fusion head"):
        ModelConfig(labels=("a", "b"), knn_weight=0.5, members=2)
    with pytest.raises(ValueError, match=re.escape("knn_weight: must be >= 0.0 and <= 1.0")):
        ModelConfig(labels=("a", "b"), knn_weight=1.5)
    stored = ModelConfig(labels=("a", "b"), knn_weight=0.5).to_dict()
    del stored["knn_weight"]
    assert ModelConfig.from_stored(stored).knn_weight == 0.0

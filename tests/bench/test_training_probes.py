"""bench.training_probes: each probe changes training as it says, on real JPEGs, and only inside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import model.training
from bench import training_probes
from bench.training_probes import PROBES, RDropLoss, drop_words, supcon_loss
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.image_tags import ImageTagger
from model.training import train

LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def tweets(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Eight demo tweets per label (negative, positive): real JPEG files and captions."""
    return load_dataset(write_demo_dataset(tmp_path_factory.mktemp("probes"), n_per_class=8, seed=0))


@pytest.fixture(scope="module")
def default_model() -> FusionClassifier:
    """The default recipe's model (packaged MiniLM and Lite0 weights), MiniLM's top two layers trainable."""
    net = FusionClassifier.build(ModelConfig(labels=LABELS), None)
    net.set_finetune("text", 2)
    return net


def _fusion_logits(net: FusionClassifier, rows: int) -> torch.Tensor:
    present = torch.ones(rows, dtype=torch.bool)
    return net.head(torch.randn(rows, 1280), torch.randn(rows, 384), present, present).logits


def test_supcon_is_lower_when_rows_are_grouped_by_label() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    grouped = torch.eye(3)[labels] + 0.01 * torch.randn(6, 3)
    mixed = torch.eye(3)[torch.tensor([0, 1, 1, 2, 2, 0])] + 0.01 * torch.randn(6, 3)
    assert float(supcon_loss(grouped, labels, 0.1)) < float(supcon_loss(mixed, labels, 0.1))
    # No row has another of its label: nothing to pull together.
    assert float(supcon_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), 0.1)) == 0.0


def test_supcon_adds_its_term_on_training_batches_only(default_model: FusionClassifier) -> None:
    targets = torch.tensor([0, 0, 1, 1])
    with PROBES["supcon"]():
        optimisation = model.training.make_optimisation(default_model, TrainConfig(), targets, 10)
    default_model.train()
    with torch.no_grad():
        logits = _fusion_logits(default_model, 4)
    assert float(optimisation.loss_fn(logits, targets)) > float(F.cross_entropy(logits, targets)) + 1e-3
    default_model.eval()
    with torch.no_grad():
        logits = _fusion_logits(default_model, 4)
    assert float(optimisation.loss_fn(logits, targets)) == pytest.approx(
        float(F.cross_entropy(logits, targets))
    )


def test_drop_words_never_drops_a_texts_first_or_last_token_or_adds_padding_back() -> None:
    lengths = torch.tensor([40, 4, 2])
    mask = (torch.arange(40)[None, :] < lengths[:, None]).long()
    torch.manual_seed(0)
    dropped = drop_words({"hidden_states": torch.zeros(3, 40, 8), "attention_mask": mask}, 0.5)[
        "attention_mask"
    ]
    assert bool((dropped <= mask).all())
    assert dropped[:, 0].tolist() == [1, 1, 1]
    assert [int(dropped[i, n - 1]) for i, n in enumerate(lengths.tolist())] == [1, 1, 1]
    assert 5 < int(mask[0].sum() - dropped[0].sum()) < 33  # about half of the 38 inner tokens


def test_word_dropout_acts_on_token_states_while_training_only(
    default_model: FusionClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []

    def recorded(inputs: dict[str, torch.Tensor], p: float) -> dict[str, torch.Tensor]:
        calls.append(p)
        return inputs

    monkeypatch.setattr(training_probes, "drop_words", recorded)
    states = {"hidden_states": torch.randn(2, 6, 384), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    with PROBES["word_dropout"](), torch.no_grad():
        default_model.eval()
        default_model.encode_text(states)
        default_model.train()
        default_model.encode_text(states)
    assert calls == [training_probes.WORD_DROPOUT]


def test_rdrop_adds_nothing_when_the_two_passes_agree() -> None:
    logits, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = float(F.cross_entropy(logits, targets))
    loss = RDropLoss(nn.CrossEntropyLoss())
    assert float(loss(logits, targets)) == pytest.approx(ce)
    assert float(loss(logits.clone(), targets)) == pytest.approx(ce)
    loss(logits, targets)
    assert float(loss(-logits, targets)) > float(F.cross_entropy(-logits, targets)) + 1e-3


def test_lpft_keeps_the_text_encoder_at_rate_0_for_the_first_epoch(default_model: FusionClassifier) -> None:
    config = TrainConfig(epochs=2, warmup_ratio=0.0)
    with PROBES["lpft"]():
        optimisation = model.training.make_optimisation(default_model, config, torch.tensor([0, 1]), 10)
    encoder = (
        {id(p) for p in default_model.text_encoder.parameters()} if default_model.text_encoder else set()
    )
    rates = []
    for _ in range(10):
        rates.append([(id(g["params"][0]) in encoder, g["lr"]) for g in optimisation.optimizer.param_groups])
        optimisation.optimizer.step()
        optimisation.scheduler.step()
    assert all(lr == 0 for step in rates[:5] for is_encoder, lr in step if is_encoder)
    assert all(lr > 0 for step in rates[:5] for is_encoder, lr in step if not is_encoder)
    assert any(lr > 0 for is_encoder, lr in rates[5] if is_encoder)


def test_tag_cutoff_writes_only_classes_at_least_10_percent_likely() -> None:
    tagger = ImageTagger(2, 3)
    weight = torch.zeros(1000, 2)
    weight[7, 0], weight[8, 0] = 8.0, 6.5  # class 7 64 %, class 8 14 %, each other class 0.02 %
    tagger.load_classifier(weight, torch.zeros(1000))
    tagger.names = tuple(f"c{i}" for i in range(1000))
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with PROBES["tag_cutoff"]():
        tags = tagger.tags(features)
    assert tags == [["c7", "c8"], []]
    assert [len(row) for row in tagger.tags(features)] == [3, 3]  # outside the probe: the three likeliest


@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_probe_changes_a_real_training_run_and_is_undone_after(
    name: str, tweets: Dataset, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path)
    config = TrainConfig(epochs=1, batch_size=8)

    def losses() -> list[float]:
        return [epoch["loss"] for epoch in train(ModelConfig(), config, tweets, None, cache=cache).history]

    base = losses()

    def patched() -> tuple[object, ...]:
        return (
            model.training.make_optimisation,
            model.training.BatchLogits.forward,
            FusionClassifier.encode_text,
            ImageTagger.tags,
        )

    originals = patched()
    with PROBES[name]():
        probed = losses()
    assert probed != base
    assert patched() == originals


def test_main_pairs_a_probe_with_a_recorded_base(
    tweets: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"": {"accuracy": [0.5, 0.5], "weighted_f1": [0.4, 0.4], "macro_f1": [0.3, 0.3]}}
    (tmp_path / "base.json").write_text(json.dumps(base))
    argv = ["training_probes", str(tweets.root), "--probe", "word_dropout", "--cv", "2", "--repeats", "1"]
    argv += ["--base-json", str(tmp_path / "base.json"), "--json", str(tmp_path / "out.json")]
    monkeypatch.setattr(sys, "argv", argv)
    training_probes.main()
    out = json.loads((tmp_path / "out.json").read_text())
    assert out[""] == base[""]
    assert len(out["word_dropout"]["accuracy"]) == 2
    assert "| word_dropout |" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [*argv[:-4], "--cv", "5", "--base-json", str(tmp_path / "base.json")])
    with pytest.raises(SystemExit):
        training_probes.main()

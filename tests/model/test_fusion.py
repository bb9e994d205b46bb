"""Tests for model.fusion.FusionClassifier."""

from __future__ import annotations

import pytest
import torch

from fusion_testkit.factories import build_tiny_model, tiny_model_config
from model.fusion import FusionClassifier

ALL = torch.tensor([True, True, True, True])
NONE = ~ALL


def _feats(model: FusionClassifier, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    assert model.image_encoder is not None and model.text_encoder is not None
    return torch.randn(batch, model.image_encoder.out_dim), torch.randn(batch, model.text_encoder.out_dim)


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_head_gives_one_logit_per_label(fusion: str) -> None:
    model = build_tiny_model(fusion=fusion, labels=("a", "b", "c"))
    out = model.head(*_feats(model), ALL, ALL)
    assert out.logits.shape == (4, 3)


def test_gated_fusion_returns_per_sample_modality_weights() -> None:
    model = build_tiny_model(fusion="gated")
    gate = model.head(*_feats(model), ALL, ALL).gate
    assert gate is not None and gate.shape == (4, 2)
    assert torch.allclose(gate.sum(dim=1), torch.ones(4))


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_ungated_fusion_has_no_gate(fusion: str) -> None:
    model = build_tiny_model(fusion=fusion)
    assert model.head(*_feats(model), ALL, ALL).gate is None


def test_missing_modality_ignores_its_features() -> None:
    model = build_tiny_model()
    img, txt = _feats(model)
    present = torch.tensor([True, False, True, False])
    first = model.head(img, txt, present, ALL).logits
    second = model.head(img + 5 * torch.randn_like(img), txt, present, ALL).logits
    assert torch.equal(first[~present], second[~present])
    assert not torch.allclose(first[present], second[present])


def test_all_missing_image_needs_no_image_features() -> None:
    model = build_tiny_model()
    _, txt = _feats(model)
    assert model.head(None, txt, NONE, ALL).logits.shape == (4, 2)


def test_present_modality_without_features_is_an_error() -> None:
    model = build_tiny_model()
    with pytest.raises(ValueError, match="image"):
        model.head(None, _feats(model)[1], ALL, ALL)


def test_text_only_model_ignores_images() -> None:
    model = build_tiny_model(image_encoder="none", modality_dropout=0.0)
    assert model.image_encoder is None
    inputs = model.tokenize(["i love it", "awful"])
    out = model(None, inputs, torch.tensor([True, True]), torch.tensor([True, True]))
    assert out.logits.shape == (2, 2)


def test_modality_dropout_never_hides_both_modalities() -> None:
    model = build_tiny_model(modality_dropout=0.5).train()
    both = torch.ones(10_000, dtype=torch.bool)
    image, text = model.heads[0]._modality_dropout(both, both)
    assert not (~image & ~text).any()
    assert 0.4 < (~image).float().mean() < 0.6
    assert 0.4 < (~text).float().mean() < 0.6


def test_an_ensemble_answers_its_members_mean_probabilities() -> None:
    model = build_tiny_model(members=3)
    img, txt = _feats(model, batch=5)
    both = torch.ones(5, dtype=torch.bool)
    out = model.head(img, txt, both, both)
    members = [member(img, txt, both, both) for member in model.heads]
    assert out.member_logits is not None and out.member_logits.shape == (3, 5, 2)
    expected = torch.stack([m.logits.softmax(-1) for m in members]).mean(0)
    assert torch.allclose(out.logits.softmax(-1), expected, atol=1e-6)
    assert out.gate is not None
    assert torch.allclose(out.gate, torch.stack([m.gate for m in members if m.gate is not None]).mean(0))
    assert not torch.allclose(members[0].logits, members[1].logits)  # each member has its own weights


def test_modality_dropout_is_off_in_eval_mode() -> None:
    model = build_tiny_model(modality_dropout=0.5).eval()
    img, txt = _feats(model, batch=64)
    both = torch.ones(64, dtype=torch.bool)
    assert torch.equal(model.head(img, txt, both, both).logits, model.head(img, txt, both, both).logits)


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_head_learns_an_xor_of_image_and_text(fusion: str) -> None:
    torch.manual_seed(0)
    model = build_tiny_model(fusion=fusion, modality_dropout=0.0).train()
    assert model.image_encoder is not None and model.text_encoder is not None
    a, b = torch.randint(0, 2, (2, 128))
    img = torch.randn(128, model.image_encoder.out_dim) * 0.1 + a[:, None].float()
    txt = torch.randn(128, model.text_encoder.out_dim) * 0.1 - b[:, None].float()
    labels = a ^ b
    head_params = [
        p for n, p in model.named_parameters() if not n.startswith(("image_encoder.", "text_encoder."))
    ]
    optimizer = torch.optim.Adam(head_params, lr=1e-2)
    present = torch.ones(128, dtype=torch.bool)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model.head(img, txt, present, present).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    accuracy = (model.head(img, txt, present, present).logits.argmax(1) == labels).float().mean()
    assert accuracy > 0.95


def test_build_needs_two_labels() -> None:
    with pytest.raises(ValueError, match=r"^labels: "):
        FusionClassifier.build(tiny_model_config(labels=("only",)), None)


def test_parameter_groups_cover_trainable_parameters_once() -> None:
    model = build_tiny_model()
    groups = model.parameter_groups(lr=1e-3, encoder_lr=1e-5, weight_decay=0.1)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert all(g["lr"] == 1e-3 for g in groups)  # cnn/bow are trained from scratch at the head's rate
    assert {g["weight_decay"] for g in groups if g["params"][0].ndim == 1} == {0.0}


def test_parameter_groups_give_finetuned_pretrained_weights_the_encoder_lr() -> None:
    config = tiny_model_config(image_encoder="efficientnet_lite0", pretrained=True)
    model = FusionClassifier.build(config, build_tiny_model().vocab, load_weights=False)
    assert model.image_encoder is not None
    encoder_params = {id(p) for p in model.image_encoder.parameters()}

    def encoder_lrs() -> set[float]:
        groups = model.parameter_groups(lr=1e-3, encoder_lr=1e-5, weight_decay=0.1)
        return {g["lr"] for g in groups for p in g["params"] if id(p) in encoder_params}

    assert encoder_lrs() == set()  # frozen by default
    model.set_finetune("all")
    assert encoder_lrs() == {1e-5}


def test_finetune_text_unfreezes_the_text_encoder_and_keeps_the_image_encoder_frozen() -> None:
    config = tiny_model_config(image_encoder="efficientnet_lite0", text_encoder="minilm", pretrained=True)
    model = FusionClassifier.build(config, load_weights=False)
    model.set_finetune("text")
    assert model.image_encoder is not None and model.text_encoder is not None
    assert model.image_encoder.frozen
    assert all(p.requires_grad for p in model.text_encoder.parameters())
    model.set_finetune("none")
    assert model.text_encoder.frozen

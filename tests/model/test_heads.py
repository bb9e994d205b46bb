"""Tests for model.heads: the agreement rule and head, and how a fusion head mixes it in."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fusion_testkit.factories import build_tiny_model, tiny_model_config
from model.heads import AgreementHead, FusionHead, agreement_rule

SENTIMENT = ("negative", "neutral", "positive")
NEG, NEU, POS = range(3)


def _pairs_giving(rule: torch.Tensor, label: int) -> set[tuple[int, int]]:
    n = rule.shape[0]
    return {divmod(i, n) for i in range(n * n) if rule[label, i] == 0}


def test_the_rule_is_how_mvsa_merged_a_text_and_an_image_label() -> None:
    rule = agreement_rule(3, NEU)
    assert _pairs_giving(rule, POS) == {(POS, POS), (POS, NEU), (NEU, POS)}
    assert _pairs_giving(rule, NEG) == {(NEG, NEG), (NEG, NEU), (NEU, NEG)}
    assert _pairs_giving(rule, NEU) == {(NEU, NEU)}
    # positive with negative gives no label at all
    assert (rule[:, POS * 3 + NEG] < -1000).all() and (rule[:, NEG * 3 + POS] < -1000).all()


def test_without_a_neutral_label_only_agreement_gives_a_label() -> None:
    rule = agreement_rule(4, None)
    for label in range(4):
        assert _pairs_giving(rule, label) == {(label, label)}


class _Answers(nn.Module):
    """Stands in for a modality's label layers: the same logits for every row."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(feats.shape[0], -1)


def _agreement(image: list[float], text: list[float], labels: tuple[str, ...] = SENTIMENT) -> AgreementHead:
    config = tiny_model_config(labels=labels, agreement_head=True)
    head = AgreementHead(config, image_dim=8, text_dim=8)
    head.image_labels, head.text_labels = _Answers(image), _Answers(text)
    return head


def _probabilities(head: AgreementHead, image: bool = True, text: bool = True) -> torch.Tensor:
    feats = torch.zeros(2, 8)
    present = torch.ones(2, dtype=torch.bool)
    return head(feats, feats, present if image else ~present, present if text else ~present).exp()


def test_agreement_combines_each_modalitys_own_answer_by_the_rule() -> None:
    image = [math.log(0.1), math.log(0.3), math.log(0.6)]  # leans positive
    text = [math.log(0.2), math.log(0.7), math.log(0.1)]  # mostly neutral
    p_image, p_text = torch.tensor(image).exp(), torch.tensor(text).exp()
    pos = p_image[POS] * p_text[POS] + p_image[POS] * p_text[NEU] + p_image[NEU] * p_text[POS]
    neg = p_image[NEG] * p_text[NEG] + p_image[NEG] * p_text[NEU] + p_image[NEU] * p_text[NEG]
    neu = p_image[NEU] * p_text[NEU]
    expected = torch.stack([neg, neu, pos]) / (neg + neu + pos)  # opposite pairs left out

    got = _probabilities(_agreement(image, text))

    assert torch.allclose(got, expected.expand(2, -1), atol=1e-5)
    assert got.argmax(-1).tolist() == [POS, POS]  # the neutral caption defers to the picture


def test_an_absent_modality_gives_no_evidence() -> None:
    image, text = [0.3, -1.0, 2.0], [1.5, 0.2, -0.4]
    head = _agreement(image, text)
    assert torch.allclose(_probabilities(head, text=False), torch.tensor(image).softmax(-1).expand(2, -1))
    assert torch.allclose(_probabilities(head, image=False), torch.tensor(text).softmax(-1).expand(2, -1))
    # Without a neutral label the absent modality is uniform: the same answer.
    binary = _agreement([0.3, 2.0], [1.0, -1.0], labels=("negative", "positive"))
    assert torch.allclose(_probabilities(binary, text=False), torch.tensor([0.3, 2.0]).softmax(-1))


def test_without_a_neutral_label_the_answers_multiply() -> None:
    image, text = [0.0, 1.0, 2.0], [2.0, 1.0, 0.0]
    got = _probabilities(_agreement(image, text, labels=("a", "b", "c")))
    expected = (torch.tensor(image).softmax(-1) * torch.tensor(text).softmax(-1))[None]
    assert torch.allclose(got, (expected / expected.sum()).expand(2, -1), atol=1e-6)


def test_a_member_with_an_agreement_head_answers_the_mean_of_both_heads() -> None:
    model = build_tiny_model(labels=SENTIMENT, fusion="sum", agreement_head=True)
    member = model.heads[0]
    assert isinstance(member, FusionHead) and member.agreement is not None
    assert model.image_encoder is not None and model.text_encoder is not None
    img, txt = torch.randn(5, model.image_encoder.out_dim), torch.randn(5, model.text_encoder.out_dim)
    present = torch.ones(5, dtype=torch.bool)

    out = member(img, txt, present, present).logits

    img_side = member._side(img, member.image_proj, present, member.missing_image, "image")
    txt_side = member._side(txt, member.text_proj, present, member.missing_text, "text")
    fusion = member.classifier(img_side + txt_side).softmax(-1)
    agreement = member.agreement(img, txt, present, present).exp()
    assert torch.allclose(out.exp(), (fusion + agreement) / 2, atol=1e-6)


def test_checkpoints_hold_the_agreement_heads_weights_but_not_its_rule() -> None:
    keys = build_tiny_model(labels=SENTIMENT, agreement_head=True).state_dict().keys()
    assert any(k.startswith("heads.0.agreement.image_labels.") for k in keys)
    assert any(k.startswith("heads.0.agreement.text_labels.") for k in keys)
    assert not any(k.endswith((".rule", ".absent")) for k in keys)
    assert not any(".agreement." in k for k in build_tiny_model(agreement_head=False).state_dict())


@pytest.mark.parametrize("fusion", ["sum", "sum_product"])
def test_sum_product_and_agreement_heads_learn_a_rule_of_both_modalities(fusion: str) -> None:
    # The label is positive when either modality says so and neither says negative: the MVSA rule.
    torch.manual_seed(0)
    model = build_tiny_model(labels=SENTIMENT, fusion=fusion, agreement_head=True, modality_dropout=0.0)
    assert model.image_encoder is not None and model.text_encoder is not None
    image_says, text_says = torch.randint(0, 3, (2, 256))
    keep = ~(((image_says == NEG) & (text_says == POS)) | ((image_says == POS) & (text_says == NEG)))
    image_says, text_says = image_says[keep], text_says[keep]
    labels = torch.where(image_says == NEU, text_says, image_says)
    img = torch.randn(len(labels), model.image_encoder.out_dim) * 0.1 + image_says[:, None].float()
    txt = torch.randn(len(labels), model.text_encoder.out_dim) * 0.1 - text_says[:, None].float()
    head_params = [
        p for n, p in model.named_parameters() if not n.startswith(("image_encoder.", "text_encoder."))
    ]
    optimizer = torch.optim.Adam(head_params, lr=1e-2)
    present = torch.ones(len(labels), dtype=torch.bool)
    model.train()
    for _ in range(80):
        loss = nn.functional.cross_entropy(model.head(img, txt, present, present).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    accuracy = (model.head(img, txt, present, present).logits.argmax(1) == labels).float().mean()
    assert accuracy > 0.95

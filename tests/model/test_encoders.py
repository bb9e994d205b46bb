"""Tests for model.encoders: every encoder builds and runs; pretrained ones load their packaged weights."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fusion_testkit.factories import make_jpeg, make_png, tiny_model_config, tiny_vocabulary
from model.config import FUSIONS, IMAGE_ENCODERS, TEXT_ENCODERS
from model.encoders import (
    IMAGE_ENCODER_BUILDERS,
    TEXT_ENCODER_BUILDERS,
    Encoder,
    build_image_encoder,
    build_text_encoder,
)
from model.encoders.efficientnet_lite import VARIANTS, EfficientNetLite, SameConv2d, weights_path
from model.encoders.minilm import CPU_CHUNK_ROWS, FROZEN_CHUNK_ROWS, MiniLM, model_dir
from model.encoders.token_states import TokenStates
from model.fusion import FusionClassifier
from model.images import ImageTransform, load_image
from model.loading import slice_inputs
from model.text import normalize_text

SENTENCES = ["A man is eating food.", "RT @bob: the weather is lovely today #sun", "I hate mondays!!"]
COMBINATIONS = [
    (image, text, fusion)
    for image, text, fusion in itertools.product(IMAGE_ENCODERS, TEXT_ENCODERS, FUSIONS)
    if (image, text) != ("none", "none")
]


@pytest.fixture(scope="module")
def effnet() -> EfficientNetLite:
    return EfficientNetLite(pretrained=True)


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM(tiny_model_config(text_encoder="minilm", max_text_tokens=128), pretrained=True)


@pytest.fixture(scope="module")
def random_encoders() -> dict[str, Encoder]:
    """One randomly initialised encoder per name, shared by the sweep (building MiniLM is slow)."""
    config = tiny_model_config()
    vocab = tiny_vocabulary(config)
    built: dict[str, Encoder] = {n: build_image_encoder(n, config) for n in IMAGE_ENCODERS if n != "none"}
    built.update({n: build_text_encoder(n, config, vocab) for n in TEXT_ENCODERS if n != "none"})
    return built


@pytest.mark.parametrize(("image", "text", "fusion"), COMBINATIONS)
def test_every_combination_classifies_real_image_bytes(
    image: str, text: str, fusion: str, random_encoders: dict[str, Encoder]
) -> None:
    config = tiny_model_config(image_encoder=image, text_encoder=text, fusion=fusion, labels=("a", "b", "c"))
    model = FusionClassifier(
        config,
        random_encoders.get(image),  # type: ignore[arg-type]
        random_encoders.get(text),  # type: ignore[arg-type]
        tiny_vocabulary(config),
    ).eval()
    transform = ImageTransform(config, train=False)
    pixels = torch.stack([transform(load_image(make_jpeg(size=(48, 40)))), transform(load_image(make_png()))])
    texts = model.tokenize(["good morning", "RT @x: bad"]) if text != "none" else None
    with torch.no_grad():
        out = model(pixels, texts, torch.tensor([True, True]), torch.tensor([True, True]))
    assert out.logits.shape == (2, 3)
    assert torch.isfinite(out.logits).all()
    assert (out.gate is not None) == (fusion == "gated")


@pytest.mark.parametrize(
    ("image", "text"),
    [*((n, "bow") for n in IMAGE_ENCODERS), *(("none", n) for n in TEXT_ENCODERS if n != "none")],
)
def test_build_creates_the_configured_encoders(image: str, text: str) -> None:
    config = tiny_model_config(image_encoder=image, text_encoder=text)
    model = FusionClassifier.build(config, tiny_vocabulary(config))
    assert (model.image_encoder.name if model.image_encoder else "none") == image
    assert (model.text_encoder.name if model.text_encoder else "none") == text


@pytest.mark.parametrize("name", [n for n in IMAGE_ENCODERS if n != "none"])
def test_image_encoder_output_width_matches_out_dim(name: str) -> None:
    encoder = build_image_encoder(name, tiny_model_config(), load_weights=False).eval()
    with torch.no_grad():
        assert encoder(torch.randn(2, 3, 40, 56)).shape == (2, encoder.out_dim)


@pytest.mark.parametrize("name", ["bow", "lstm"])
def test_vocabulary_text_encoders_handle_empty_and_long_texts(name: str) -> None:
    config = tiny_model_config(text_encoder=name, max_text_tokens=4)
    encoder = build_text_encoder(name, config, tiny_vocabulary(config))
    inputs = encoder.tokenize(["", "love love love love love love love"])
    assert inputs["input_ids"].shape == (2, 4)
    features = encoder(inputs)
    assert features.shape == (2, encoder.out_dim)
    assert torch.equal(features[0], torch.zeros(encoder.out_dim))


@pytest.mark.parametrize("name", ["bow", "lstm"])
def test_vocabulary_encoders_require_a_vocabulary(name: str) -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        build_text_encoder(name, tiny_model_config())


def test_unknown_encoder_names_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"^image_encoder: unknown"):
        build_image_encoder("vit", tiny_model_config())
    with pytest.raises(ValueError, match=r"^text_encoder: unknown"):
        build_text_encoder("gpt", tiny_model_config())


def test_identity_follows_the_weights() -> None:
    first, second = (build_image_encoder("cnn", tiny_model_config()) for _ in range(2))
    assert first.identity != second.identity
    second.load_state_dict(first.state_dict())
    assert first.identity == second.identity
    assert first.identity.startswith("cnn@")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_efficientnet_variant_loads_every_packaged_tensor(name: str) -> None:
    packaged = torch.load(weights_path(name), weights_only=True, map_location="cpu")
    encoder = EfficientNetLite(name, pretrained=True)
    ours = encoder.state_dict()
    assert set(ours) == {k for k in packaged if not k.startswith("_fc.")}
    assert all(torch.equal(ours[k], packaged[k]) for k in ours)
    assert encoder.identity.startswith(f"{name}@")
    size = VARIANTS[name].image_size
    pixels = ImageTransform(tiny_model_config(image_size=size), train=False)(load_image(make_jpeg()))[None]
    with torch.no_grad():
        assert encoder(pixels).shape == (1, 1280)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_finetune_last_starts_at_the_last_two_stages_of_each_variant(name: str) -> None:
    encoder = EfficientNetLite(name, pretrained=True, load_weights=False)  # a checkpoint's load
    encoder.set_finetune("last")
    first = VARIANTS[name].first_last_block
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    blocks = {n.split(".")[1] for n in trainable if n.startswith("_blocks.")}
    assert blocks == {str(i) for i in range(first, len(encoder._blocks))}
    assert "_conv_head.weight" in trainable and "_conv_stem.weight" not in trainable
    # The last two stages begin with the network's last stride-2 block.
    assert encoder._blocks[first]._depthwise_conv.stride == (2, 2)


def test_efficientnet_identity_is_stable_across_loads(effnet: EfficientNetLite) -> None:
    assert EfficientNetLite(pretrained=True).identity == effnet.identity


def test_pretrained_encoder_starts_frozen_and_stays_in_eval(effnet: EfficientNetLite) -> None:
    assert effnet.frozen
    effnet.train()
    assert not effnet.training


@pytest.fixture
def unfrozen_last(effnet: EfficientNetLite) -> Iterator[EfficientNetLite]:
    effnet.set_finetune("last")
    yield effnet
    effnet.set_finetune("none")


def test_finetune_last_trains_only_the_last_blocks_with_frozen_batchnorm(
    unfrozen_last: EfficientNetLite,
) -> None:
    trainable = {n for n, p in unfrozen_last.named_parameters() if p.requires_grad}
    assert "_conv_head.weight" in trainable
    assert "_blocks.15._project_conv.weight" in trainable
    assert "_conv_stem.weight" not in trainable
    unfrozen_last.train()
    assert unfrozen_last.training
    assert not unfrozen_last._bn1.training


def test_efficientnet_features_are_pooled_1280d(effnet: EfficientNetLite) -> None:
    config = tiny_model_config(image_size=64)
    pixels = ImageTransform(config, train=False)(load_image(make_jpeg(size=(64, 64)))).unsqueeze(0)
    with torch.no_grad():
        assert effnet(pixels).shape == (1, 1280)


def test_efficientnet_features_in_pieces_equal_its_forward(effnet: EfficientNetLite) -> None:
    config = tiny_model_config(image_size=64)
    pixels = ImageTransform(config, train=False)(load_image(make_jpeg(size=(64, 64)))).unsqueeze(0)
    with torch.no_grad():
        activations = effnet.run_blocks(effnet.stem(pixels), 0, 12)
        assert activations.shape == (1, 192, 2, 2)  # stage 6's width; 64 px halved five times
        last = effnet.run_blocks(effnet.run_blocks(activations, 12, 14), 14, 16)
        torch.testing.assert_close(effnet.pooled_head(last), effnet(pixels))


def test_same_padding_is_folded_into_the_convolutions_by_onnx_runtime(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    # Stride 2 pads one pixel at the bottom/right only, stride 1 two on each side: both TF "SAME" cases.
    convs = torch.nn.Sequential(SameConv2d(3, 8, 3, stride=2), SameConv2d(8, 8, 5, groups=8)).eval()
    pixels = ImageTransform(tiny_model_config(image_size=32), train=False)(load_image(make_jpeg()))[None]
    graph, optimised = tmp_path / "convs.onnx", tmp_path / "optimised.onnx"
    torch.onnx.export(convs, (pixels,), str(graph), input_names=["pixels"], opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(optimised)
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    assert [n.op_type for n in onnx.load(str(optimised)).graph.node] == ["Conv", "Conv"]
    with torch.no_grad():
        expected = convs(pixels)
    (got,) = session.run(None, {"pixels": pixels.numpy()})
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)


def test_minilm_loads_every_packaged_tensor(minilm: MiniLM) -> None:
    packaged = load_file(str(model_dir() / "model.safetensors"))
    ours = minilm.state_dict()
    assert set(ours) == set(packaged)
    assert all(torch.equal(ours[k], packaged[k]) for k in ours)


def test_minilm_truncates_to_max_text_tokens() -> None:
    encoder = MiniLM(tiny_model_config(text_encoder="minilm", max_text_tokens=8), load_weights=False)
    inputs = encoder.tokenize(["word " * 50, "short"])
    assert inputs["input_ids"].shape == (2, 8)
    assert inputs["attention_mask"][1].sum() == 3  # [CLS] short [SEP]


def test_minilm_batches_in_length_chunks_give_each_text_its_own_embedding_and_gradient() -> None:
    encoder = MiniLM(tiny_model_config(text_encoder="minilm"), load_weights=False)
    encoder.set_finetune("all")
    encoder.eval()  # no dropout: the chunked batch and the texts one by one must agree exactly
    texts = [" ".join(["word"] * (1 + (7 * i) % 40)) + f" {i}" for i in range(2 * CPU_CHUNK_ROWS + 5)]
    weights = torch.randn(len(texts), 384, generator=torch.Generator().manual_seed(0))
    inputs = encoder.tokenize(texts)
    assert inputs["attention_mask"].sum(dim=1).unique().numel() > 10  # lengths vary, and unsorted

    batched = encoder(inputs)
    (batched * weights).sum().backward()
    used = [p for p in encoder.parameters() if p.grad is not None]  # the unused pooler gets none
    batched_grads = [p.grad.clone() for p in used]
    encoder.zero_grad()
    alone = torch.cat([encoder(encoder.tokenize([text])) for text in texts])
    (alone * weights).sum().backward()

    assert len(used) > 90
    assert torch.allclose(batched, alone, atol=1e-5)
    assert all(torch.allclose(b, p.grad, atol=1e-4) for b, p in zip(batched_grads, used, strict=True))


def test_minilm_top_layers_on_frozen_token_states_give_the_full_embeddings_and_train_alone() -> None:
    encoder = MiniLM(tiny_model_config(text_encoder="minilm"), load_weights=False)
    encoder.train_top_layers(2)
    encoder.eval()  # no dropout, so the two ways must agree
    texts = [" ".join(["word"] * (1 + (5 * i) % 30)) + f" {i}" for i in range(FROZEN_CHUNK_ROWS + 9)]
    inputs = encoder.tokenize(texts)

    states = encoder.frozen_states(inputs)
    rows = [70, 3, 41, 0, *range(8, 30)]  # more than a CPU chunk, unsorted
    top = encoder(states.rows(rows))
    top.sum().backward()

    assert len(states) == len(texts) and len(states.states) == int(inputs["attention_mask"].sum())
    assert torch.allclose(top, encoder(slice_inputs(inputs, rows)), atol=1e-5)
    trained = {name for name, p in encoder.named_parameters() if p.grad is not None}
    assert trained and all(name.startswith(("encoder.layer.4.", "encoder.layer.5.")) for name in trained)
    assert not encoder.embeddings.word_embeddings.weight.requires_grad
    encoder.set_finetune("none")
    assert encoder.frozen and encoder.trained_layers == 0


def test_token_states_rows_pad_each_text_to_the_longest_of_the_batch() -> None:
    per_text = [torch.full((n, 2), float(n)) for n in (3, 1, 2)]
    states = TokenStates.pack(per_text)

    batch = states.rows([2, 0])

    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert torch.equal(batch["hidden_states"][0], torch.tensor([[2.0, 2.0], [2.0, 2.0], [0.0, 0.0]]))
    assert torch.equal(batch["hidden_states"][1], per_text[0])


@pytest.mark.parametrize("layers", [0, 7])
def test_minilm_refuses_a_number_of_top_layers_it_does_not_have(layers: int) -> None:
    encoder = MiniLM(tiny_model_config(text_encoder="minilm"), load_weights=False)
    with pytest.raises(ValueError, match=rf"^finetune_layers: minilm has 6 transformer layers; got {layers}"):
        encoder.train_top_layers(layers)


@pytest.mark.parametrize("name", ["bow", "minilm"])
def test_text_encoders_trained_from_scratch_train_whole_whatever_finetune_layers_says(name: str) -> None:
    config = tiny_model_config(text_encoder=name, pretrained=False)
    encoder = build_text_encoder(name, config, tiny_vocabulary(config), load_weights=False)

    encoder.train_top_layers(1)

    assert encoder.trained_layers == 0 and all(p.requires_grad for p in encoder.parameters())


@pytest.mark.slow  # importing sentence-transformers (and transformers) alone takes seconds
def test_minilm_matches_sentence_transformers(minilm: MiniLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_dir()), device="cpu")
    texts = [normalize_text(s, minilm.config) for s in SENTENCES]
    expected = torch.from_numpy(reference.encode(texts, convert_to_numpy=True))
    with torch.no_grad():
        ours = minilm(minilm.tokenize(SENTENCES))
    assert torch.allclose(ours, expected, atol=1e-4)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(SENTENCES)))


def test_every_configurable_encoder_name_has_a_builder_and_back() -> None:
    assert {*IMAGE_ENCODER_BUILDERS, "none"} == set(IMAGE_ENCODERS)
    assert {*TEXT_ENCODER_BUILDERS, "none"} == set(TEXT_ENCODERS)

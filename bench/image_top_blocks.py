"""Would training EfficientNet-Lite0's last blocks help the fusion model? A probe by paired CV of train.jsonl.

Usage: python -m bench.image_top_blocks /path/to/mvsa-single --candidate "blocks=1 encoder_lr=1e-4"
       [--candidate ...] [--cv 5] [--repeat 0] [--cache-dir DIR] [--json OUT]

The default recipe caches the image encoder's pooled features, so none of its weights train. This probe
measures whether training its last blocks would pay before anything of the kind is built into `train()`.
The photos run once through the frozen stem and blocks up to the last two stages' second block
(`EfficientNetLite.stem` and `run_blocks`; Lite0's activations are [N, 192, 7, 7], kept in memory). A
recipe `blocks=b` then trains the last b blocks and the head convolution (`EfficientNetLite.top_blocks`;
batch-norm statistics stay frozen, as `Encoder.train` keeps them) together with a fusion head, from those
activations, each step running only the blocks that train. `blocks=0`, the base, is the cached features.
The text side is frozen MiniLM's sentence embedding from the feature cache: the probe is about the image
side (the default recipe also fine-tunes MiniLM's top layers, which it leaves out to stay fast).

Every recipe trains on the folds of `bench.recipe_compare`'s repeat R (`model.splits.kfold_datasets` with
seed R x k; fold i trains with seed R x k + i): the whole training part of the fold for `epochs` epochs
with the defaults' optimisation (`model.optimisation.make_optimisation`: AdamW at `lr` for the head and
`encoder_lr` for the encoder's weights, warm-up then cosine, batch size, gradient clipping). It keeps the
last epoch and is scored once on the held-out part, so nothing is selected on it. Other `key=value` pairs
of a recipe are `bench.quality.parse_overrides` pairs (`m.` keys for ModelConfig). dev.jsonl is never
read. `--json` writes recipe_compare's layout, so `bench.recipe_pool` pools it.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from bench.quality import SCORES, parse_overrides
from bench.recipe_compare import add_cv_arguments, report
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.encoders.efficientnet_lite import EfficientNetLite
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.loading import image_batches, index_batches
from model.metrics import classification_report
from model.optimisation import make_optimisation
from model.splits import kfold_datasets

BASE = "blocks=0"


@dataclass(frozen=True)
class Recipe:
    """How many of the image encoder's last blocks train, and the configs of the run."""

    blocks: int
    model_config: ModelConfig
    train_config: TrainConfig


def parse_recipe(spec: str, labels: tuple[str, ...]) -> Recipe:
    """`blocks=1 encoder_lr=1e-3 m.fusion=gated`: blocks, then ModelConfig and TrainConfig overrides."""
    pairs = spec.split()
    blocks = [int(pair.removeprefix("blocks=")) for pair in pairs if pair.startswith("blocks=")]
    if len(blocks) != 1:
        raise SystemExit(f"recipe {spec!r}: name blocks=N exactly once")
    model_kw, train_kw = parse_overrides([pair for pair in pairs if not pair.startswith("blocks=")])
    model_config = replace(ModelConfig(), **model_kw, labels=labels)
    return Recipe(blocks[0], model_config, replace(TrainConfig(), **train_kw))


@dataclass(frozen=True)
class ProbeData:
    """Train.jsonl as the probe sees it: label indices, image activations and frozen text features."""

    labels: torch.Tensor  # [N]
    activations: torch.Tensor  # [N, C, H, W], entering block `first_block`
    first_block: int
    text: torch.Tensor  # [N, 384]


def image_activations(
    encoder: EfficientNetLite, dataset: Dataset, config: ModelConfig, stop: int, batch_size: int = 64
) -> torch.Tensor:
    """The activations entering block `stop` for every photo of `dataset`, in sample order."""
    paths = [sample.image for sample in dataset.samples]
    batches = index_batches(len(paths), batch_size)
    out = []
    with torch.inference_mode():
        for pixels in image_batches(paths, config, batches, train=False):
            out.append(encoder.run_blocks(encoder.stem(pixels), 0, stop))
    return torch.cat(out)


def prepare(
    dataset: Dataset, recipes: list[Recipe], cache: FeatureCache
) -> tuple[ProbeData, FusionClassifier]:
    """Encode every photo up to the first block any recipe trains, and every text, once."""
    model = FusionClassifier.build(recipes[0].model_config)
    model.set_finetune("none")
    encoder = model.image_encoder
    if not isinstance(encoder, EfficientNetLite):
        raise SystemExit("the probe needs an EfficientNet-Lite image encoder")
    first_block = encoder.variant.first_last_block + 1
    if any(not 0 <= recipe.blocks <= encoder.num_blocks - first_block for recipe in recipes):
        raise SystemExit(f"blocks: between 0 and {encoder.num_blocks - first_block}")
    text = cache.get_or_compute(model, dataset, modalities=("text",)).text
    assert text is not None
    labels = torch.tensor([dataset.labels.index(sample.label) for sample in dataset.samples])
    activations = image_activations(encoder, dataset, model.config, first_block)
    return ProbeData(labels, activations, first_block, text), model


@torch.inference_mode()
def frozen_part(encoder: EfficientNetLite, data: ProbeData, blocks: int) -> torch.Tensor:
    """What the blocks that stay frozen make of every photo: the activations entering the last `blocks`
    blocks, or the pooled features when none trains. Run once a recipe, not every fold or step."""
    start = encoder.num_blocks - blocks
    chunks = [encoder.run_blocks(chunk, data.first_block, start) for chunk in data.activations.split(256)]
    inputs = torch.cat(chunks)
    return (encoder.pooled_head(inputs) if blocks == 0 else inputs).clone()


def fold_score(
    recipe: Recipe,
    base_model: FusionClassifier,
    data: ProbeData,
    inputs: torch.Tensor,
    train_rows: list[int],
    test_rows: list[int],
) -> dict[str, float]:
    """Train the recipe on `train_rows` from seed `train_config.seed`, its image side starting from
    `inputs` (`frozen_part`); its scores on `test_rows`."""
    config = recipe.train_config
    torch.manual_seed(config.seed)
    encoder = copy.deepcopy(base_model.image_encoder)
    assert isinstance(encoder, EfficientNetLite)
    start = encoder.num_blocks - recipe.blocks
    model = FusionClassifier(recipe.model_config, encoder, base_model.text_encoder)
    model.set_finetune("none")
    for module in encoder.top_blocks(recipe.blocks) if recipe.blocks else ():
        module.requires_grad_(True)

    def image_features(rows: torch.Tensor) -> torch.Tensor:
        if recipe.blocks == 0:
            return inputs[rows]
        return encoder.pooled_head(encoder.run_blocks(inputs[rows], start, encoder.num_blocks))

    def logits(rows: torch.Tensor) -> list[torch.Tensor]:
        present = torch.ones(len(rows), dtype=torch.bool)
        out = model.head(image_features(rows), data.text[rows], present, present)
        return list(out.member_logits) if out.member_logits is not None else [out.logits]

    train_index = torch.tensor(train_rows)
    steps = config.epochs * math.ceil(len(train_rows) / config.batch_size)
    optimisation = make_optimisation(model, config, data.labels[train_index], steps)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        model.train()
        for batch in index_batches(len(train_rows), config.batch_size, generator):
            rows = train_index[batch]
            loss = torch.stack([optimisation.loss_fn(out, data.labels[rows]) for out in logits(rows)]).mean()
            optimisation.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimisation.optimizer.step()
            optimisation.scheduler.step()
    model.eval()
    with torch.inference_mode():
        batches = torch.tensor(test_rows).split(256)
        probabilities = [torch.stack(logits(rows)).softmax(dim=-1).mean(dim=0) for rows in batches]
    predicted = torch.cat(probabilities).argmax(dim=1)
    report = classification_report(data.labels[test_rows], predicted, recipe.model_config.labels)
    return {key: report[key] for key in SCORES}


def compare(
    dataset: Dataset, specs: list[str], k: int, repeat: int, cache: FeatureCache
) -> dict[str, dict[str, list[float]]]:
    """Every recipe's held-out scores on the k folds of repeat `repeat`, fold by fold."""
    recipes = {spec: parse_recipe(spec, dataset.labels) for spec in specs}
    data, base_model = prepare(dataset, list(recipes.values()), cache)
    encoder = base_model.image_encoder
    assert isinstance(encoder, EfficientNetLite)
    inputs = {spec: frozen_part(encoder, data, recipe.blocks) for spec, recipe in recipes.items()}
    index = {id(sample): i for i, sample in enumerate(dataset.samples)}
    out: dict[str, dict[str, list[float]]] = {spec: {key: [] for key in SCORES} for spec in specs}
    for fold, (fold_train, heldout) in enumerate(kfold_datasets(dataset, k, repeat * k)):
        train_rows = [index[id(sample)] for sample in fold_train.samples]
        test_rows = [index[id(sample)] for sample in heldout.samples]
        for spec, recipe in recipes.items():
            seeded = replace(recipe, train_config=replace(recipe.train_config, seed=repeat * k + fold))
            started = time.monotonic()
            scores = fold_score(seeded, base_model, data, inputs[spec], train_rows, test_rows)
            for key in SCORES:
                out[spec][key].append(scores[key])
            print(
                f"fold {fold + 1}/{k} {spec}: accuracy {scores['accuracy']:.4f}"
                f" ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    return out


def main() -> None:
    """Probe each candidate against frozen image features on the same folds and print the paired table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cv_arguments(parser)
    parser.add_argument("--candidate", action="append", required=True, help="a recipe, e.g. 'blocks=1'")
    parser.add_argument("--repeat", type=int, default=0, help="which of recipe_compare's repeats (default 0)")
    args = parser.parse_args()
    dataset = load_dataset(args.data_dir, split="train", skip_invalid=True)
    print(f"train: {len(dataset)} samples; repeat {args.repeat} of {args.cv}-fold CV", flush=True)
    out = compare(dataset, [BASE, *args.candidate], args.cv, args.repeat, FeatureCache(args.cache_dir))
    report(out, BASE, args.json)


if __name__ == "__main__":
    main()

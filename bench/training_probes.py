"""Would a change to the training step itself help? Paired CV of train.jsonl for changes that are not options.

Usage: python -m bench.training_probes /path/to/mvsa-single --probe supcon [--probe word_dropout ...]
       [--cv 5] [--repeats 2] [--first-repeat 0] [--base-json FILE] [--cache-dir DIR] [--json OUT]

Some candidates are not a knob of the default recipe but a change to how it trains: an extra loss term,
noise on the text's token states, another schedule for the first epoch, fewer tags. Before one is built
into `model` as an option, this probe measures it. Each probe patches the training code for the length of
its run (`unittest.mock.patch`, undone after), runs `bench.recipe_compare.fold_scores` on the defaults with
the same folds and per-fold seeds as the base, and the paired table is printed. The base is the defaults,
run here first, or recorded: `--base-json` names a recipe_compare `--json` file whose "" recipe (the
defaults) holds the fold scores of the same repeats, which pair exactly because folds and seeds are
deterministic. Each probe's values were fixed before its first run and are not arguments:

- `supcon`: cross-entropy + 0.5 x the supervised contrastive loss (Khosla et al. 2020; the label-based
  contrastive term of CLMLF) of each batch's fused vectors (the classifier MLP's input), L2-normalised,
  temperature 0.1. Session 26.
- `word_dropout`: while training, every token of the text but [CLS] and the last [SEP] is left out of
  MiniLM's fine-tuned layers and of the pooling with probability 0.1. Session 26.
- `rdrop`: every batch runs twice through what trains (independent dropout draws); loss = the mean of the
  two cross-entropies + 1.0 x the symmetric KL divergence between the two passes (Liang et al. 2021).
  Session 25.
- `lpft`: the head trains alone for the first epoch (MiniLM's layers at learning rate 0), then MiniLM's
  layers warm up and decay over the remaining epochs (Kumar et al. 2022). Session 25.
- `tag_cutoff`: of the photo's three likeliest ImageNet classes, only those the classifier gives a
  probability of at least 0.10 are written into its text. Session 25.

dev.jsonl is never read: this chooses, it does not report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

import model.training
from bench.recipe_compare import add_cv_arguments, add_repeat_arguments, fold_scores, report
from model.config import TrainConfig
from model.datasets import load_dataset
from model.features import FeatureCache
from model.fusion import FusionClassifier, FusionHead
from model.image_tags import ImageTagger, class_names
from model.optimisation import Optimisation, lr_lambda

SUPCON_WEIGHT, SUPCON_TEMPERATURE = 0.5, 0.1
WORD_DROPOUT = 0.1
RDROP_ALPHA = 1.0
TAG_CUTOFF = 0.10

# What the probes patch, as it is unpatched.
_make_optimisation = model.training.make_optimisation
_batch_logits = model.training.BatchLogits.forward
_encode_text = FusionClassifier.encode_text


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss of a batch: each row is pulled towards the other rows of its label.

    Mean over the rows that have another row of their label (0 when none has)."""
    z = F.normalize(features.float(), dim=-1)
    itself = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    similarity = (z @ z.T / temperature).masked_fill(itself, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~itself
    anchors = positive.any(dim=1)
    if not bool(anchors.any()):
        return z.sum() * 0
    summed = log_prob.masked_fill(~positive, 0).sum(dim=1)
    return -(summed[anchors] / positive.sum(dim=1)[anchors]).mean()


class SupConLoss(nn.Module):
    """Cross-entropy, plus the weighted SupCon term of the fused vectors the last training forward left."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.fused: torch.Tensor | None = None

    def remember(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        """Forward pre-hook on the classifier's first layer: keep its input while training."""
        self.fused = args[0] if module.training else None

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.base(logits, targets)
        if self.fused is None:
            return loss
        fused, self.fused = self.fused, None
        return loss + SUPCON_WEIGHT * supcon_loss(fused, targets, SUPCON_TEMPERATURE)


def wrapping_the_loss(
    name: str, wrap: Callable[[FusionClassifier, nn.Module], nn.Module]
) -> Callable[[FusionClassifier, TrainConfig, torch.Tensor, int], Optimisation]:
    """A `make_optimisation` whose loss is the default's wrapped by `wrap(model, loss)` (one fusion head)."""

    def make(
        net: FusionClassifier, config: TrainConfig, labels: torch.Tensor, total_steps: int
    ) -> Optimisation:
        optimisation = _make_optimisation(net, config, labels, total_steps)
        if len(net.heads) != 1:
            raise ValueError(f"{name}: probes a single fusion head (members=1)")
        optimisation.loss_fn = wrap(net, optimisation.loss_fn)
        return optimisation

    return make


def _supcon(net: FusionClassifier, base: nn.Module) -> nn.Module:
    loss = SupConLoss(base)
    cast(FusionHead, net.heads[0]).classifier[0].register_forward_pre_hook(loss.remember)
    return loss


def drop_words(inputs: dict[str, torch.Tensor], p: float) -> dict[str, torch.Tensor]:
    """Token states with each token but the first and the last of every text masked out with probability p."""
    mask = inputs["attention_mask"]
    positions = torch.arange(mask.shape[1], device=mask.device)[None, :]
    inner = (positions > 0) & (positions < mask.sum(dim=1, keepdim=True) - 1)
    dropped = inner & (torch.rand(mask.shape, device=mask.device) < p)
    return {**inputs, "attention_mask": mask * (~dropped).long()}


def _encode_text_dropping_words(net: FusionClassifier, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if net.training and "hidden_states" in inputs:
        inputs = drop_words(inputs, WORD_DROPOUT)
    return _encode_text(net, inputs)


class RDropLoss(nn.Module):
    """Called on the two passes of a batch in turn: cross-entropy each, and on the second pass the
    symmetric KL divergence between them, scaled so that their mean is mean CE + alpha x KL."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.first: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.base(logits, targets)
        if self.first is None:
            self.first = logits
            return loss
        p, q = self.first.log_softmax(dim=-1), logits.log_softmax(dim=-1)
        self.first = None
        kl = F.kl_div(p, q, log_target=True, reduction="batchmean")
        kl = 0.5 * (kl + F.kl_div(q, p, log_target=True, reduction="batchmean"))
        return loss + 2 * RDROP_ALPHA * kl


def _two_passes(self: model.training.BatchLogits, *args: Any) -> torch.Tensor:
    return torch.cat([_batch_logits(self, *args), _batch_logits(self, *args)])


def _with_head_first(
    net: FusionClassifier, config: TrainConfig, labels: torch.Tensor, total_steps: int
) -> Optimisation:
    optimisation = _make_optimisation(net, config, labels, total_steps)
    head_alone = total_steps // config.epochs
    rest = total_steps - head_alone
    head = lr_lambda(config.schedule, total_steps, int(config.warmup_ratio * total_steps))
    after = lr_lambda(config.schedule, rest, int(config.warmup_ratio * rest))

    def encoder(step: int) -> float:
        return 0.0 if step < head_alone else after(step - head_alone)

    pretrained = {
        id(p) for enc in (net.image_encoder, net.text_encoder) if enc is not None for p in enc.parameters()
    }
    groups = optimisation.optimizer.param_groups
    factors = [encoder if id(group["params"][0]) in pretrained else head for group in groups]
    if encoder not in factors:
        raise ValueError("lpft: no encoder weights train in this recipe")
    optimisation.scheduler = torch.optim.lr_scheduler.LambdaLR(optimisation.optimizer, factors)
    return optimisation


@torch.no_grad()
def _tags_above_cutoff(self: ImageTagger, features: torch.Tensor) -> list[list[str]]:
    probabilities = self.classifier(features.to(self.classifier.weight.dtype)).softmax(dim=-1)
    top = probabilities.topk(self.count, dim=-1)
    names = class_names(top.indices.tolist(), self.names)
    return [
        [name for name, p in zip(row, ps, strict=True) if p >= TAG_CUTOFF]
        for row, ps in zip(names, top.values.tolist(), strict=True)
    ]


@contextlib.contextmanager
def _rdrop() -> Iterator[None]:
    with (
        mock.patch.object(model.training.BatchLogits, "forward", _two_passes),
        mock.patch.object(
            model.training, "make_optimisation", wrapping_the_loss("rdrop", lambda net, base: RDropLoss(base))
        ),
    ):
        yield


# Each probe's patches, as a context manager made afresh for each run.
PROBES: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "supcon": partial(
        mock.patch.object, model.training, "make_optimisation", wrapping_the_loss("supcon", _supcon)
    ),
    "word_dropout": partial(mock.patch.object, FusionClassifier, "encode_text", _encode_text_dropping_words),
    "rdrop": _rdrop,
    "lpft": partial(mock.patch.object, model.training, "make_optimisation", _with_head_first),
    "tag_cutoff": partial(mock.patch.object, ImageTagger, "tags", _tags_above_cutoff),
}


def main() -> None:
    """Cross-validate (or read) the defaults and every probe on the same folds; print the paired table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cv_arguments(parser)
    parser.add_argument(
        "--probe", action="append", required=True, choices=sorted(PROBES), help="a probe to run"
    )
    parser.add_argument(
        "--base-json", type=Path, help="recorded fold scores of the defaults on these repeats"
    )
    add_repeat_arguments(parser)
    args = parser.parse_args()
    repeats = range(args.first_repeat, args.first_repeat + args.repeats)
    dataset = load_dataset(args.data_dir, split="train", skip_invalid=True)
    print(f"train: {len(dataset)} samples; repeats {repeats.start}-{repeats.stop - 1} of {args.cv}-fold CV")
    out: dict[str, Any] = {}
    if args.base_json:
        out[""] = json.loads(args.base_json.read_text())[""]
        folds = len(out[""]["accuracy"])
        if folds != args.cv * args.repeats:
            parser.error(f"--base-json: holds {folds} folds, these repeats have {args.cv * args.repeats}")
    with tempfile.TemporaryDirectory(prefix="probe-cache-") as tmp:
        cache = FeatureCache(args.cache_dir or Path(tmp))
        if not args.base_json:
            out[""] = fold_scores("", dataset, args.cv, repeats, cache)
            print("done: defaults", flush=True)
        for name in args.probe:
            with PROBES[name]():
                out[name] = fold_scores("", dataset, args.cv, repeats, cache)
            print(f"done: {name}", flush=True)
    report(out, "", args.json)


if __name__ == "__main__":
    main()

"""Would an ensemble of independently fine-tuned default models help? A probe by paired CV of train.jsonl.

Usage: python -m bench.seed_ensemble /path/to/mvsa-single [--members 2] [--cv 5] [--repeat 0]
       [--cache-dir DIR] [--json OUT]

`FusionClassifier` ensembles only fusion heads over one encoder (`members`); a fine-tuned ensemble would
hold several fine-tuned copies of MiniLM's top layers, a large change to checkpoints, serving and export.
This probe measures what it could gain before that is built. On each fold of `bench.recipe_compare`'s
repeat R (`model.splits.kfold_datasets` with seed R x k), it trains the default recipe `members` times, as
that many jobs with different seeds would: member m trains with seed R x k + i + 100 m on fold i, carving
its own validation slice and choosing its own epoch on it (`model.training.train`, exactly a job's path;
member 0 is the fold run of `bench.recipe_compare`). The held-out part is scored once for member 0 alone
(`members=1`, the base) and for the mean of all members' probabilities (`members=M`); nothing is selected
on it. dev.jsonl is never read. `--json` writes recipe_compare's layout, so `bench.recipe_pool` pools it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from bench.quality import SCORES
from bench.recipe_compare import add_cv_arguments, report
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.loading import index_batches
from model.metrics import classification_report
from model.prepared_data import batch_features, head_output, iter_batches, prepare_data
from model.splits import kfold_datasets, split_dataset
from model.training import train


@torch.inference_mode()
def heldout_probabilities(model: FusionClassifier, heldout: Dataset, cache: FeatureCache) -> torch.Tensor:
    """The model's class probabilities [N, C] for every sample of `heldout`, both modalities present."""
    data = prepare_data(model, heldout, cache=cache)
    model.eval()
    out = []
    batches = index_batches(len(data), 256)
    for rows, pixels in iter_batches(model, data, batches, augment=False, num_workers=0):
        image, text = batch_features(model, data, rows, pixels)
        out.append(head_output(model, image, text, len(rows), "fusion").logits.float().softmax(dim=-1))
    return torch.cat(out)


def compare(
    dataset: Dataset, members: int, k: int, repeat: int, cache: FeatureCache
) -> dict[str, dict[str, list[float]]]:
    """Held-out scores of one member and of the ensemble of `members`, on each of the k folds of `repeat`."""
    names = ("members=1", f"members={members}")
    out: dict[str, dict[str, list[float]]] = {name: {key: [] for key in SCORES} for name in names}
    for fold, (fold_train, heldout) in enumerate(kfold_datasets(dataset, k, repeat * k)):
        probabilities = []
        labels: tuple[str, ...] = ()
        for member in range(members):
            started = time.monotonic()
            config = replace(TrainConfig(), seed=repeat * k + fold + 100 * member)
            fit, stopping = split_dataset(fold_train, config.val_fraction, config.seed)
            result = train(ModelConfig(), config, fit, stopping, cache=cache)
            if labels and result.model.labels != labels:
                raise RuntimeError(f"members disagree on the label order: {labels}, {result.model.labels}")
            labels = result.model.labels
            probabilities.append(heldout_probabilities(result.model, heldout, cache))
            print(
                f"fold {fold + 1}/{k} member {member + 1}/{members}: epoch {result.best_epoch} kept"
                f" ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        truth = [labels.index(sample.label) for sample in heldout.samples]
        for name, used in zip(names, (probabilities[:1], probabilities), strict=True):
            predicted = torch.stack(used).mean(dim=0).argmax(dim=1)
            report = classification_report(truth, predicted, labels)
            for key in SCORES:
                out[name][key].append(report[key])
        print(
            f"fold {fold + 1}/{k}: accuracy {out[names[0]]['accuracy'][-1]:.4f} alone,"
            f" {out[names[1]]['accuracy'][-1]:.4f} ensembled",
            flush=True,
        )
    return out


def main() -> None:
    """Score one member against the ensemble on the same folds and print the paired table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cv_arguments(parser)
    parser.add_argument("--members", type=int, default=2, help="fine-tuned models per fold (default 2)")
    parser.add_argument("--repeat", type=int, default=0, help="which of recipe_compare's repeats (default 0)")
    args = parser.parse_args()
    if args.members < 2:
        parser.error("--members: an ensemble needs at least 2")
    dataset = load_dataset(args.data_dir, split="train", skip_invalid=True)
    print(f"train: {len(dataset)} samples; repeat {args.repeat} of {args.cv}-fold CV", flush=True)
    out = compare(dataset, args.members, args.cv, args.repeat, FeatureCache(args.cache_dir))
    report(out, "members=1", args.json)


if __name__ == "__main__":
    main()

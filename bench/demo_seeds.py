"""The first-run demo recipe over data and training seeds: validation accuracy of fusion and of each modality.

    python -m bench.demo_seeds --data-seeds 0,1,2 --train-seeds 0,1,2,3,4 --fusions concat,gated

Trains the production encoders with the shipped recipe (image features cached, MiniLM's top layers
fine-tuned), as `python -m service --bootstrap-demo` does, on demo datasets written with each data seed;
prints one line per run and the lowest fusion accuracy. Each new data seed embeds 750 pictures once
(minutes on a small CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from model.config import ModelConfig, TrainConfig
from model.datasets import load_dataset
from model.demo_data import write_demo_dataset
from model.features import FeatureCache
from model.training import train


def _seeds(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    """Parse the arguments, run every combination and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-seeds", type=_seeds, default=[0, 1, 2])
    parser.add_argument("--train-seeds", type=_seeds, default=[0, 1, 2])
    parser.add_argument("--fusions", default="concat", help="comma-separated heads; the demo's is concat")
    parser.add_argument("--work-dir", type=Path, help="keep datasets and feature cache here (default: temp)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.work_dir or Path(scratch)
        cache = FeatureCache(root / "cache")
        lowest = 1.0
        print("data_seed fusion_head train_seed  fusion image_only text_only epochs seconds")
        for data_seed in args.data_seeds:
            folder = root / f"demo-{data_seed}"
            if not (folder / "dev.jsonl").is_file():
                write_demo_dataset(folder, seed=data_seed)
            train_set = load_dataset(folder, split="train")
            val_set = load_dataset(folder, split="dev", labels=train_set.labels)
            for head in args.fusions.split(","):
                for train_seed in args.train_seeds:
                    start = time.monotonic()
                    config = TrainConfig(device="cpu", seed=train_seed)
                    result = train(ModelConfig(fusion=head), config, train_set, val_set, cache=cache)
                    acc = {
                        mode: result.metrics[mode]["accuracy"]
                        for mode in ("fusion", "image_only", "text_only")
                    }
                    lowest = min(lowest, acc["fusion"])
                    seconds = time.monotonic() - start
                    print(
                        f"{data_seed:9d} {head:11s} {train_seed:10d}  {acc['fusion']:.3f}"
                        f"  {acc['image_only']:.3f}      {acc['text_only']:.3f}"
                        f"     {len(result.history):6d} {seconds:7.1f}",
                        flush=True,
                    )
        print(f"lowest fusion accuracy: {lowest:.3f}")


if __name__ == "__main__":
    main()

"""Training throughput (samples/s) of one model on one dataset, three ways.

(a) cached:    model.training.train() with a warm model.features.FeatureCache: frozen encoders never run.
(b) re-encode: the frozen encoders run on every batch of every epoch (DataLoader decoding, no cache).
(c) textbook:  per-sample PIL decode and a full forward/backward per batch, no cache, no loader tricks.

    python -m bench.train_bench                       # demo data, production encoders (frozen)
    python -m bench.train_bench --data path/to/mvsa-single --limit 512
    python -m bench.train_bench --encoders tiny       # cnn + bow: nothing is frozen, so (a) trains end to end
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset
from model.device import autocast, configure_cpu_threads, resolve_device
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.images import ImageTransform
from model.loading import image_batches, index_batches
from model.text import build_vocabulary
from model.training import train

ENCODERS: dict[str, dict[str, object]] = {
    "production": {"image_encoder": "efficientnet_lite0", "text_encoder": "minilm"},
    "tiny": {"image_encoder": "cnn", "text_encoder": "bow", "pretrained": False, "image_size": 64},
}


def _build_model(config: ModelConfig, dataset: Dataset, device: torch.device) -> FusionClassifier:
    texts = [s.text for s in dataset.samples]
    vocab = build_vocabulary(texts, config) if config.text_encoder in ("bow", "lstm") else None
    return FusionClassifier.build(config, vocab).to(device)


def _optimizer(model: FusionClassifier, tc: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr)


def _step(optimizer: torch.optim.Optimizer, logits: torch.Tensor, targets: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def run_cached(
    config: ModelConfig, tc: TrainConfig, dataset: Dataset, device: torch.device, cache: FeatureCache
) -> None:
    """(a) the production path; the cache was filled by a warm-up call."""
    train(config, tc, dataset, cache=cache)


def run_reencode(
    config: ModelConfig, tc: TrainConfig, dataset: Dataset, device: torch.device, cache: FeatureCache
) -> None:
    """(b) like (a), but every batch is decoded and encoded again each epoch."""
    model = _build_model(config, dataset, device)
    optimizer = _optimizer(model, tc)
    labels = torch.tensor([dataset.labels.index(s.label) for s in dataset.samples])
    texts, paths = [s.text for s in dataset.samples], [s.image for s in dataset.samples]
    generator = torch.Generator().manual_seed(tc.seed)
    for _ in range(tc.epochs):
        model.train()
        batches = index_batches(len(dataset), tc.batch_size, generator)
        loader = image_batches(paths, config, batches, train=False, num_workers=tc.num_workers)
        for batch, pixels in zip(batches, loader, strict=True):
            present = torch.ones(len(batch), dtype=torch.bool, device=device)
            inputs = {k: v.to(device) for k, v in model.tokenize([texts[i] for i in batch]).items()}
            with autocast(device):
                image, text = model.encode_image(pixels.to(device)), model.encode_text(inputs)
                logits = model.head(image, text, present, present).logits
            _step(optimizer, logits, labels[batch].to(device))


class _TextbookData(torch.utils.data.Dataset):
    """Opens each image with PIL on every access, the way most tutorials do."""

    def __init__(self, dataset: Dataset, config: ModelConfig) -> None:
        self.samples = dataset.samples
        self.labels = dataset.labels
        self.transform = ImageTransform(config, train=False)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, int]:
        sample = self.samples[index]
        with Image.open(sample.image) as image:
            pixels = self.transform(image.convert("RGB"))
        return pixels, sample.text, self.labels.index(sample.label)


def run_textbook(
    config: ModelConfig, tc: TrainConfig, dataset: Dataset, device: torch.device, cache: FeatureCache
) -> None:
    """(c) DataLoader(shuffle=True) over per-sample decodes, model(pixels, tokens) forward, backward, step."""
    model = _build_model(config, dataset, device)
    optimizer = _optimizer(model, tc)
    loader = torch.utils.data.DataLoader(
        _TextbookData(dataset, config), batch_size=tc.batch_size, shuffle=True
    )
    for _ in range(tc.epochs):
        model.train()
        for pixels, texts, targets in loader:
            present = torch.ones(len(targets), dtype=torch.bool, device=device)
            inputs = {k: v.to(device) for k, v in model.tokenize(list(texts)).items()}
            logits = model(pixels.to(device), inputs, present, present).logits
            _step(optimizer, logits, targets.to(device))


Runner = Callable[[ModelConfig, TrainConfig, Dataset, torch.device, FeatureCache], None]
MODES: dict[str, Runner] = {"cached": run_cached, "re-encode": run_reencode, "textbook": run_textbook}


def _dataset(args: argparse.Namespace, workdir: Path) -> Dataset:
    if args.data is None:
        root = write_demo_dataset(workdir / "demo", n_per_class=args.n_per_class)
        dataset = load_dataset(root)
    else:
        dataset = load_dataset(args.data, skip_invalid=True)  # mvsa-single has a few duplicate rows
    return dataset.subset(range(min(args.limit, len(dataset)))) if args.limit else dataset


def main() -> None:
    """Parse options, run each mode a few times and print the median samples/s."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="dataset (default: demo data in a temp dir)")
    parser.add_argument("--n-per-class", type=int, default=150, help="demo data size")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N samples")
    parser.add_argument("--encoders", choices=sorted(ENCODERS), default="production")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    threads = configure_cpu_threads(args.threads) if device.type == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="train-bench-") as workdir:
        dataset = _dataset(args, Path(workdir))
        config = ModelConfig(labels=dataset.labels, **ENCODERS[args.encoders])  # type: ignore[arg-type]
        tc = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=device.type,
            patience=0,
        )
        cache = FeatureCache(Path(workdir) / "cache")
        start = time.perf_counter()
        train(config, tc, dataset, cache=cache)  # warm-up: fills the cache for (a)
        print(f"{len(dataset)} samples, encoders={args.encoders}, device={device}, threads={threads}, "
              f"epochs={args.epochs}, batch={args.batch_size}; warm-up run with encoding "
              f"{time.perf_counter() - start:.1f}s. Times: whole runs incl. model loading.")  # fmt: skip
        print(f"{'mode':<12}{'samples/s':>12}{'runs (s)':>28}")
        rates = {}
        for mode in args.modes:
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                MODES[mode](config, tc, dataset, device, cache)
                seconds.append(time.perf_counter() - start)
            rates[mode] = len(dataset) * args.epochs / statistics.median(seconds)
            runs = " ".join(f"{s:.2f}" for s in seconds)
            print(f"{mode:<12}{rates[mode]:>12.1f}{runs:>28}", flush=True)
        if "cached" in rates:
            for mode, rate in rates.items():
                if mode != "cached":
                    print(f"cached is {rates['cached'] / rate:.1f}x faster than {mode}")


if __name__ == "__main__":
    main()

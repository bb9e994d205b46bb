"""Turning samples into model inputs: image decoding DataLoaders and batch slicing of token tensors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from model.config import ModelConfig
from model.images import ImageTransform, load_image


class ImageFiles(TorchDataset[torch.Tensor]):
    """Image files decoded and transformed on access (in DataLoader workers when there are any)."""

    def __init__(self, paths: Sequence[Path], config: ModelConfig, train: bool) -> None:
        self.paths = list(paths)
        self.transform = ImageTransform(config, train=train)
        # Decoding a big JPEG at a reduced DCT scale is several times faster and loses nothing after resizing.
        self.draft_size = config.image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index], draft_size=self.draft_size))


def image_batches(
    paths: Sequence[Path],
    config: ModelConfig,
    batches: Iterable[Sequence[int]],
    *,
    train: bool,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """Pixel batches [B, 3, S, S] of `paths`, one per index list in `batches`, in that order."""
    loader = DataLoader(
        ImageFiles(paths, config, train),
        batch_sampler=[list(b) for b in batches],
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    return iter(loader)


def index_batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """Index lists covering range(n), shuffled when a generator is given; no batch of one (batch norm)."""
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def slice_inputs(
    inputs: Mapping[str, torch.Tensor], index: Sequence[int] | torch.Tensor
) -> dict[str, torch.Tensor]:
    """Rows `index` of pre-tokenized [N, L] tensors (or token states [N, L, H]), dropping padding columns
    beyond the batch's longest."""
    rows = torch.as_tensor(index, dtype=torch.long)
    batch = {key: value[rows] for key, value in inputs.items()}
    mask = batch.get("attention_mask")
    if mask is not None and mask.ndim == 2:
        width = max(1, int(mask.sum(dim=1).max()))
        batch = {key: value[:, :width] if value.ndim >= 2 else value for key, value in batch.items()}
    return batch

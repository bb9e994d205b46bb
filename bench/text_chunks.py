"""MiniLM fine-tuning steps on CPU: a batch as length-sorted chunks (the default) vs one padded batch.

Usage: python -m bench.text_chunks /path/to/mvsa-single [--batches 24] [--batch-size 32] [--chunk-rows 16]

Times the forward, backward and AdamW step of `finetune: text`'s text encoder on random batches of the
dataset's train.jsonl texts, each batch both ways (each way first in turn), and prints the median
milliseconds of each and their ratio. `model.encoders.minilm` chunks a CPU batch of more than
`CPU_CHUNK_ROWS` texts (`--chunk-rows` tries another size); setting it to the batch size turns it off.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from model.config import ModelConfig
from model.datasets import load_dataset
from model.encoders import minilm
from model.loading import index_batches, slice_inputs


def step_ms(
    encoder: minilm.MiniLM, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor]
) -> float:
    """Milliseconds of one forward, backward and optimiser step on `inputs`."""
    started = time.perf_counter()
    encoder(inputs).pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    """Time both ways on the same batches and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-rows", type=int, default=minilm.CPU_CHUNK_ROWS, help="rows a chunk")
    args = parser.parse_args()
    texts = [s.text for s in load_dataset(args.data_dir, split="train", skip_invalid=True).samples]
    encoder = minilm.MiniLM(ModelConfig())
    encoder.set_finetune("all")
    encoder.train()
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-6)
    tokens = encoder.tokenize(texts)
    batches = index_batches(len(texts), args.batch_size, torch.Generator().manual_seed(0))[: args.batches]
    default_rows = minilm.CPU_CHUNK_ROWS
    times: dict[str, list[float]] = {"chunked": [], "one padded batch": []}
    padded = []
    for i, batch in enumerate(batches):
        inputs = slice_inputs(tokens, batch)
        padded.append(inputs["input_ids"].shape[1])
        # A batch no larger than a chunk runs whole.
        ways = [("chunked", args.chunk_rows), ("one padded batch", len(batch))]
        for name, rows in ways[:: 1 if i % 2 == 0 else -1]:
            minilm.CPU_CHUNK_ROWS = rows
            times[name].append(step_ms(encoder, optimizer, inputs))
    minilm.CPU_CHUNK_ROWS = default_rows
    lengths = tokens["attention_mask"].sum(dim=1).float()
    print(
        f"{len(batches)} batches of {args.batch_size} texts, chunks of {args.chunk_rows},"
        f" torch threads {torch.get_num_threads()}:"
        f" {lengths.mean():.1f} tokens a text on average, padded to {statistics.fmean(padded):.1f} a batch"
    )
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.0f} ms a step")
    ratio = statistics.median(times["chunked"]) / statistics.median(times["one padded batch"])
    print(f"chunked / one padded batch: {ratio:.2f}")


if __name__ == "__main__":
    main()

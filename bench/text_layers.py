"""MiniLM fine-tuning steps on CPU by how many top layers train (`finetune_layers`), and the one-off cost.

Usage: python -m bench.text_layers /path/to/mvsa-single [--batches 16] [--batch-size 32] [--layers 0,4,3,2,1]

For each choice (0: all of MiniLM, from tokens; n: the top n layers, from the token states of the frozen
ones) times the forward, backward and AdamW step on the same random batches of the dataset's train.jsonl
texts, the choices in turn within each batch (a rotating order, so machine noise hits each alike), and
prints each one's median milliseconds a step and its ratio to training all of MiniLM. It also prints the
seconds `frozen_states` takes over the whole train split: what a run pays once for those token states.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.text_chunks import step_ms
from model.config import ModelConfig
from model.datasets import load_dataset
from model.encoders.minilm import MiniLM
from model.encoders.token_states import TokenStates
from model.loading import index_batches, slice_inputs


def choose(encoder: MiniLM, layers: int) -> None:
    """Train all of `encoder` (0) or only its top `layers`."""
    if layers:
        encoder.train_top_layers(layers)
    else:
        encoder.set_finetune("all")


def main() -> None:
    """Time every choice on the same batches and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", default="0,4,3,2,1", help="choices of finetune_layers (0: all)")
    args = parser.parse_args()
    texts = [s.text for s in load_dataset(args.data_dir, split="train", skip_invalid=True).samples]
    encoder = MiniLM(ModelConfig())
    tokens = encoder.tokenize(texts)
    choices = [int(n) for n in args.layers.split(",")]
    states: dict[int, TokenStates] = {}
    optimizers: dict[int, torch.optim.Optimizer] = {}
    for n in choices:
        choose(encoder, n)
        optimizers[n] = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-6)
        if n:
            started = time.perf_counter()
            states[n] = encoder.frozen_states(tokens)
            seconds = time.perf_counter() - started
            print(f"finetune_layers {n}: frozen_states over {len(texts)} texts {seconds:.1f} s")
    batches = index_batches(len(texts), args.batch_size, torch.Generator().manual_seed(0))[: args.batches]
    times: dict[int, list[float]] = {n: [] for n in choices}
    for i, batch in enumerate(batches):
        for n in choices[i % len(choices) :] + choices[: i % len(choices)]:
            choose(encoder, n)
            encoder.train()
            inputs = states[n].rows(batch) if n else slice_inputs(tokens, batch)
            times[n].append(step_ms(encoder, optimizers[n], inputs))
    print(f"{len(batches)} batches of {args.batch_size} texts, torch threads {torch.get_num_threads()}:")
    reference = statistics.median(times[0]) if 0 in times else None
    for n, values in times.items():
        ratio = f", {statistics.median(values) / reference:.2f} of all" if reference else ""
        trained = sum(p.numel() for p in optimizers[n].param_groups[0]["params"])
        median = statistics.median(values)
        print(
            f"finetune_layers {n}: {trained / 1e6:.1f} M weights train, median {median:.0f} ms a step{ratio}"
        )


if __name__ == "__main__":
    main()

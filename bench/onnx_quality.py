"""ONNX fp32 and int8 against torch on a labelled set: accuracy, agreement, largest probability gap, items/s.

Usage: python -m bench.onnx_quality CHECKPOINT DATA [--split dev] [--batch-size 4]

Exports the checkpoint's graphs (fp32 and dynamic int8) into a temporary copy, classifies every valid row
of DATA with the three runtimes (same decoded bytes, same batches, one caller, all cores) and prints a
markdown table. Issue 13's int8 bars: accuracy within 1.0 point of fp32, agreement with fp32 >= 98 %.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from model.datasets import load_dataset


def _classify(predictor: Any, images: list[bytes], texts: list[str], batch: int) -> tuple[list[Any], float]:
    """Predictions for every row in batches of ``batch``, and the items/s it took."""
    predictor.warmup()
    started = time.perf_counter()
    out: list[Any] = []
    for i in range(0, len(images), batch):
        out += predictor.predict_batch(images[i : i + batch], texts[i : i + batch])
    return out, len(images) / (time.perf_counter() - started)


def main() -> None:
    """Export, classify with torch / ONNX / ONNX int8, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--skip-torch", action="store_true", help="compare with ONNX fp32 only (faster)")
    args = parser.parse_args()

    from model.device import available_cpus, configure_cpu_threads
    from model.export import export_onnx
    from model.onnx_predictor import OnnxPredictor
    from model.predictor import Predictor

    cpus = available_cpus()
    configure_cpu_threads(cpus)
    with tempfile.TemporaryDirectory(prefix="onnx-quality-") as tmp:
        path = Path(tmp) / args.checkpoint.name
        shutil.copytree(args.checkpoint, path)
        export_onnx(path, quantize="int8")
        torch_predictor = Predictor.from_checkpoint(path, device="cpu")
        dataset = load_dataset(args.data, split=args.split, labels=torch_predictor.labels, skip_invalid=True)
        images = [s.image.read_bytes() for s in dataset.samples]
        texts = [s.text for s in dataset.samples]
        truth = [s.label for s in dataset.samples]
        runs: dict[str, Any] = {} if args.skip_torch else {"torch": torch_predictor}
        runs |= {
            "onnx": OnnxPredictor.from_checkpoint(path, threads=cpus),
            "onnx-int8": OnnxPredictor.from_checkpoint(path, int8=True, threads=cpus),
        }
        results = {name: _classify(p, images, texts, args.batch_size) for name, p in runs.items()}
    fp32 = results["onnx"][0]
    reference = "onnx" if args.skip_torch else "torch"
    print(f"{len(images)} rows of {args.data} ({args.split}), batches of {args.batch_size}, {cpus} CPU(s)")
    print()
    print(f"| runtime | accuracy | agreement with ONNX fp32 | max abs prob. diff vs {reference} | items/s |")
    print("|---|---:|---:|---:|---:|")
    for name, (preds, rate) in results.items():
        accuracy = sum(p.label == y for p, y in zip(preds, truth, strict=True)) / len(truth)
        agree = sum(p.label == q.label for p, q in zip(preds, fp32, strict=True)) / len(fp32)
        gap = max(
            abs(p.probabilities[k] - q.probabilities[k])
            for p, q in zip(preds, results[reference][0], strict=True)
            for k in p.probabilities
        )
        print(f"| {name} | {accuracy:.4f} | {agree:.2%} | {gap:.2g} | {rate:.1f} |")


if __name__ == "__main__":
    main()

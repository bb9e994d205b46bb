"""Serving benchmark: the in-process ceiling, the service and a naive FastAPI server, one model, one machine.

``python -m bench.serve_bench [--quick] [--device cpu|cuda] [--checkpoint DIR] [--data MANIFEST]`` from the
repository root. Phases, in order:

1. ceiling: ``Predictor.predict_batch`` on image bytes + text (decode, preprocess, forward) in this
   process, at several batch sizes and torch thread counts; the best throughput and the single-item
   latency (median) are the references.
2. service: ``python -m service`` on 127.0.0.1 with a temporary model store; closed-loop load from a
   separate process (``bench.loadgen``) at each concurrency; the two reference settings measured
   again in this process (the service idle), and the mean of both measurements taken as the
   reference; then an RSS phase of ``--requests-for-rss``.
3. naive: ``bench.naive_server`` (decode + forward inside a plain handler) under the same load.

Every server and client runs in its own process group and is stopped on any exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from bench.serve_measure import (
    REPO,
    CeilingRow,
    LoadPlan,
    bench_server,
    measure_ceiling,
    measure_row,
    onnx_predictors,
)
from bench.serve_report import render, runtime_comparison
from fusion_testkit.processes import HOST, free_port

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "mvsa-single" / "dev.jsonl"
UNTRAINED_NOTE = (
    "default architecture with pretrained encoders and an untrained head: "
    "inference cost is the same as a trained model's"
)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the ``finally`` blocks that stop the children


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _setups(text: str) -> list[tuple[int, int]]:
    """``"1x1,1x2,2x1"`` -> [(callers, threads), ...]."""
    pairs = [part.strip().lower().split("x") for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected CALLERSxTHREADS,... got {text!r}")
    return [(int(callers), int(threads)) for callers, threads in pairs]


SERVICE_KNOBS = (
    "max_batch_size",
    "max_wait_ms",
    "max_queue",
    "decode_threads",
    "inference_threads",
    "torch_threads",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="manifest (.jsonl/.csv) or dataset dir"
    )
    parser.add_argument("--samples", type=int, help="use only the first N samples (default: all)")
    parser.add_argument(
        "--checkpoint", type=Path, help="checkpoint dir (default: the untrained default model)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "torch", "onnx", "onnx-int8"),
        help="the service's FUSION_RUNTIME and the ceiling's runtime; with ONNX the torch ceiling is "
        "measured too, for the ratio (default auto: ONNX on CPU)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds per phase")
    parser.add_argument("--duration", type=float, help="measured seconds per load level (default 20)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each level (default 3)")
    parser.add_argument("--concurrency", type=_ints, help="client counts (default 1,8,32,64)")
    parser.add_argument("--batch-sizes", type=_ints, help="ceiling batch sizes (default 1,4,8,16,32,64)")
    parser.add_argument(
        "--ceiling-setups",
        type=_setups,
        help="ceiling CALLERSxTHREADS list: concurrent predict_batch callers, torch threads each "
        "(default on CPU: 1x1, 1xN and Nx1 for N CPUs)",
    )
    parser.add_argument("--ceiling-seconds", type=float, help="seconds per ceiling setting (default 8)")
    parser.add_argument("--requests-for-rss", type=int, help="service RSS phase, requests (default 20000)")
    parser.add_argument("--rss-concurrency", type=int, default=32, help="clients in the RSS phase")
    parser.add_argument("--skip-naive", action="store_true", help="do not benchmark the naive server")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    for knob in SERVICE_KNOBS:
        flag = knob.replace("_", "-")
        parser.add_argument(f"--{flag}", dest=knob, help=f"the service's FUSION_{knob.upper()}")
    return parser


def _fill_defaults(args: argparse.Namespace, cpus: int, device: str) -> None:
    for name, full, smoke in (
        ("duration", 20.0, 2.0),
        ("warmup", 3.0, 0.5),
        ("concurrency", [1, 8, 32, 64], [1, 8, 32, 64]),
        ("batch_sizes", [1, 4, 8, 16, 32, 64], [1, 4]),
        ("ceiling_seconds", 8.0, 1.0),
        ("requests_for_rss", 20_000, 300),
    ):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.quick else full)
    if args.ceiling_setups is None:
        cpu_setups = [(1, 1), (1, cpus), (cpus, 1)]
        args.ceiling_setups = [(1, cpus)] if device == "cuda" else list(dict.fromkeys(cpu_setups))


def _prepare_store(
    checkpoint: Path | None, store_root: Path, labels: tuple[str, ...], fingerprint: str
) -> Path:
    """The checkpoint as the active version of a fresh model store; returns its directory."""
    from model.checkpoint import save_checkpoint
    from model.config import ModelConfig
    from model.fusion import FusionClassifier
    from service.runtime.model_store import ModelStore

    store = ModelStore(store_root)
    path = store.new_version_path()
    if checkpoint is not None:
        shutil.copytree(checkpoint, path)
    else:
        model = FusionClassifier.build(ModelConfig(labels=labels))
        extra = {"source": "serve_bench, untrained head"}
        save_checkpoint(path, model, metrics={}, dataset_fingerprint=fingerprint, extra=extra)
    store.activate(path.name)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Run every phase and print the markdown report on stdout."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    args = _parser().parse_args(argv)

    import torch

    from model.datasets import load_dataset
    from model.device import available_cpus, resolve_device
    from model.predictor import Predictor
    from service.runtime.model_loader import choose_runtime
    from service.settings import Settings

    device = resolve_device(args.device).type
    cpus = available_cpus()
    _fill_defaults(args, cpus, device)
    knobs = {knob: getattr(args, knob) for knob in SERVICE_KNOBS if getattr(args, knob) is not None}
    # What the service will run with: the same validation, no .env (the server runs in a clean directory).
    settings = Settings(_env_file=None, **knobs)  # type: ignore[call-arg]
    load_at_start = os.getloadavg()[0]
    dataset = load_dataset(args.data, skip_invalid=True)
    samples = dataset.samples[: args.samples] if args.samples else dataset.samples
    images = [s.image.read_bytes() for s in samples]
    texts = [s.text for s in samples]

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        workdir = Path(tmp)
        checkpoint = _prepare_store(args.checkpoint, workdir / "models", dataset.labels, dataset.fingerprint)
        samples_file = workdir / "samples.json"
        samples_file.write_text(json.dumps([{"image": str(s.image), "text": s.text} for s in samples]))

        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        predictor.warmup()
        config = predictor.config
        runtime = choose_runtime(args.runtime, device)
        predictor_for = onnx_predictors(checkpoint, runtime) if runtime != "torch" else lambda t: predictor
        ceilings = [
            measure_ceiling(
                get,
                images,
                texts,
                batch_sizes=args.batch_sizes,
                setups=args.ceiling_setups,
                seconds=args.ceiling_seconds,
            )
            for get in ([predictor_for] if runtime == "torch" else [predictor_for, lambda t: predictor])
        ]
        ceiling, torch_ceiling = ceilings[0], (ceilings[1] if len(ceilings) > 1 else None)

        plan = LoadPlan(
            workdir,
            samples_file,
            args.concurrency,
            args.duration,
            args.warmup,
            args.requests_for_rss,
            args.rss_concurrency,
        )
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
        service_env = {
            **env,
            "FUSION_MODEL_DIR": str(workdir / "models"),
            "FUSION_DATA_DIR": str(workdir / "data"),
            "FUSION_DEVICE": device,
            "FUSION_START_WORKER": "false",  # training is not part of serving
            "FUSION_RUNTIME": runtime,
            **{f"FUSION_{knob.upper()}": str(value) for knob, value in knobs.items()},
        }
        port = free_port()
        service_cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port)]

        def measure_again(row: CeilingRow) -> CeilingRow:
            return measure_row(
                predictor_for(row.threads),
                images,
                texts,
                callers=row.callers,
                threads=row.threads,
                batch_size=row.batch_size,
                seconds=args.ceiling_seconds,
            )

        def measure_references_again() -> None:
            nonlocal ceiling
            single = ceiling.single
            ceiling = dataclasses.replace(
                ceiling,
                best_again=measure_again(ceiling.best),
                single_again=measure_again(single) if single else None,
            )

        service = bench_server("service", service_cmd, port, service_env, plan, measure_references_again)
        naive = None
        if not args.skip_naive:
            port = free_port()
            naive_cmd = [sys.executable, "-m", "bench.naive_server", "--checkpoint", str(checkpoint)]
            naive_cmd += ["--host", HOST, "--port", str(port), "--device", device]
            naive = bench_server("naive", naive_cmd, port, env, plan)

    model = f"image {config.image_encoder}, text {config.text_encoder}, fusion {config.fusion}, "
    model += f"{config.image_size} px; " + (
        UNTRAINED_NOTE if args.checkpoint is None else str(args.checkpoint)
    )
    serving = settings.inference_plan(device)
    header = [
        f"## Serving benchmark ({'quick smoke run' if args.quick else 'full run'})",
        "",
        f"- machine: {cpus} CPU(s), device {device}, torch {torch.__version__}; load average "
        f"{load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        f"- model: {model}",
        f"- data: {len(samples)} photos + captions from {args.data}",
        f"- load: {args.duration:g} s measured after {args.warmup:g} s warm-up per level; closed loop, "
        "httptools client on uvloop in a separate process, keep-alive, multipart `image` + `text`",
        f"- service settings: max_batch_size={serving.max_batch_size}, "
        f"max_wait_ms={settings.max_wait_ms:g}, max_queue={settings.max_queue}, "
        f"decode threads={serving.decode_threads}, inference threads={serving.inference_threads}, "
        f"torch threads={serving.torch_threads}",
    ]
    header.append(f"- runtime: {runtime} (ceiling and service)")
    report = render(ceiling, service, naive, header)
    if torch_ceiling is not None:
        report += "\n\n" + "\n".join(runtime_comparison(ceiling, torch_ceiling, service, runtime))
    print(report)
    if args.json is not None:
        references = {"reference": ceiling.reference, "single_item_ms": ceiling.single_item_ms}
        results = {
            "ceiling": {**asdict(ceiling), **references},
            "service": asdict(service),
            "naive": naive and asdict(naive),
            "torch_ceiling": torch_ceiling and asdict(torch_ceiling),
        }
        args.json.write_text(json.dumps({"args": vars(args), **results}, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Command line: `python -m model demo-data | train | evaluate | predict | export`.

Bad input (missing files, invalid datasets or checkpoints, bad options) exits with status 2 and one line
`error: ...` on stderr, never a traceback.

`train --nproc N` (N > 1) runs itself again under `python -m torch.distributed.run --standalone
--nproc-per-node N`; started by torchrun directly (e.g. across nodes) it trains data-parallel in the
process group torchrun describes, and only rank 0 prints and writes the checkpoint. `--progress json`
prints each progress report as a line `{"progress": {...}}` (`model.progress.progress_line`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, DatasetError, load_dataset
from model.manifests import MANIFEST_EXTENSIONS
from model.splits import split_dataset
from model.tables import cv_table, metrics_table

if TYPE_CHECKING:
    from model.progress import Progress

EXIT_BAD_INPUT = 2
_Config = typing.TypeVar("_Config", ModelConfig, TrainConfig)
_VAL_SPLITS = ("dev", "val", "validation")
# Dataset choices rather than architecture: labels come from the data, the rest has its own option.
_SKIPPED_FIELDS = {"labels", "kfold", "val_fraction"}


class UsageError(Exception):
    """Bad command-line usage, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_config_options(parser: argparse.ArgumentParser, config_type: type) -> None:
    """One --option per scalar field of a config dataclass, defaulting to None (= the config's default)."""
    hints = typing.get_type_hints(config_type)
    group = parser.add_argument_group(f"{config_type.__name__} fields (defaults: the config's)")
    for field in dataclasses.fields(config_type):
        hint = hints[field.name]
        if field.name in _SKIPPED_FIELDS or typing.get_origin(hint) is tuple:
            continue
        flag = "--" + field.name.replace("_", "-")
        if hint is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, dest=field.name, type=hint, default=None, metavar=hint.__name__.upper())


def _config_from_args(
    config_type: type[_Config], args: argparse.Namespace, base: Mapping[str, Any] | None = None
) -> _Config:
    """The config of `base` (plain values) with the options given on the command line replacing fields."""
    names = {f.name for f in dataclasses.fields(config_type)}
    given = {name: value for name, value in vars(args).items() if name in names and value is not None}
    return config_type.from_dict({**(base or {}), **given})


def _config_file(path: Path | None) -> dict[str, Any]:
    """`--config`: JSON with `model_config` and/or `train_config` (as in a checkpoint's config.json)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config {path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or not {"model_config", "train_config"} & data.keys():
        raise UsageError(f"--config {path}: expected an object with model_config and/or train_config")
    for key in ("model_config", "train_config"):
        if not isinstance(data.get(key), dict | None):
            raise UsageError(f"--config {path}: {key} must be an object or null; got {json.dumps(data[key])}")
    return data


def _build_parser() -> _Parser:
    parser = _Parser(prog="python -m model", description="Train and use image+text fusion classifiers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser(
        "demo-data", help="write the synthetic sentiment demo dataset (negative / positive)"
    )
    demo.add_argument("out", type=Path, help="folder to write train.jsonl, dev.jsonl and images/ into")
    demo.add_argument("--n-per-class", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="train a model and save a checkpoint")
    train.add_argument("data", type=Path, help="manifest (.jsonl/.csv) or dataset folder")
    train.add_argument("--split", help="manifest name inside the dataset folder (default: train)")
    val = train.add_mutually_exclusive_group()
    val.add_argument("--val", type=Path, help="validation manifest or folder (default: a dev/val manifest "
                     "next to the training one, else a stratified split)")  # fmt: skip
    val.add_argument("--val-fraction", type=float, help="hold out this fraction of the training data")
    train.add_argument("--val-split", help="manifest name inside the --val folder")
    train.add_argument("--cv", "--kfold", dest="cv", type=int, default=0, metavar="K",
                       help="k-fold cross-validation (2..20), then one model on all the data for the folds'"
                       " median best epoch; that model is saved")  # fmt: skip
    train.add_argument("--test", type=Path, help="test manifest or folder: measured on the final model only")
    train.add_argument("--test-split", help="manifest name inside the --test folder")
    train.add_argument("--out", type=Path, help="checkpoint folder to create (default: checkpoints/<time>)")
    train.add_argument("--cache-dir", type=Path, help="feature cache of frozen encoders, reused across runs")
    train.add_argument("--skip-invalid", action="store_true", help="drop invalid rows instead of failing")
    train.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: all this process may use, shared "
        "equally by the training processes of one machine)"
    )  # fmt: skip
    train.add_argument("--config", type=Path, help="JSON with model_config and/or train_config (e.g. a "
                       "checkpoint's config.json); the options below override its fields")  # fmt: skip
    train.add_argument("--progress", choices=("bars", "json"), default="bars",
                       help="progress bars on a terminal, or one JSON line per report on stdout")  # fmt: skip
    _add_config_options(train, ModelConfig)
    _add_config_options(train, TrainConfig)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on a dataset")
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--split", help="manifest name inside a dataset folder (default: train)")
    evaluate.add_argument("--cache-dir", type=Path)
    evaluate.add_argument("--skip-invalid", action="store_true")
    evaluate.add_argument("--json", action="store_true", help="print the full reports as JSON")
    evaluate.add_argument("--threads", type=int, help="CPU threads for torch (default: all)")

    predict = commands.add_parser("predict", help="classify one image and/or text (JSON out)")
    predict.add_argument("checkpoint", type=Path)
    predict.add_argument("--image", type=Path)
    predict.add_argument("--text")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    export = commands.add_parser("export", help="write the inference graph beside a checkpoint (ONNX)")
    export.add_argument("checkpoint", type=Path)
    export.add_argument("--format", default="onnx", choices=("onnx",))
    export.add_argument("--quantize", choices=("int8",), help="also write a dynamically quantised graph")
    return parser


def _validation_set(
    args: argparse.Namespace, train_set: Dataset, config: TrainConfig
) -> tuple[Dataset, Dataset]:
    """(train, val): --val, else a dev/val manifest beside the training one, else a stratified split."""
    if args.val is not None:
        return train_set, load_dataset(
            args.val, split=args.val_split, labels=train_set.labels, skip_invalid=args.skip_invalid
        )
    if args.val_split is not None:
        raise UsageError("--val-split needs --val")
    folder = args.data if args.data.is_dir() else None
    if folder is not None and args.val_fraction is None:
        for split in _VAL_SPLITS:
            if any((folder / f"{split}{ext}").is_file() for ext in MANIFEST_EXTENSIONS):
                return train_set, load_dataset(
                    folder, split=split, labels=train_set.labels, skip_invalid=args.skip_invalid
                )
    return split_dataset(train_set, args.val_fraction or config.val_fraction, seed=config.seed)


def _print_progress_json(progress: Progress) -> None:
    """`--progress json`: one line per report, flushed at once for the process reading it."""
    from model.progress import progress_line

    print(progress_line(progress), flush=True)


def _without_option(argv: Sequence[str], flag: str) -> list[str]:
    """`argv` less `flag VALUE` / `flag=VALUE` (torchrun's own parser takes `--nproc` for an abbreviation)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def _train(args: argparse.Namespace) -> int:
    from model.distributed import check_nproc, launched_by_torchrun, process_group, torchrun_command

    configs = _config_file(args.config)
    model_config = _config_from_args(ModelConfig, args, configs.get("model_config"))
    train_config = _config_from_args(TrainConfig, args, configs.get("train_config"))
    if args.cv:
        if not 2 <= args.cv <= 20:
            raise UsageError(f"--cv: must be between 2 and 20 folds; got {args.cv}")
        train_config = dataclasses.replace(train_config, kfold=args.cv)
    if train_config.kfold and train_config.nproc > 1:
        raise UsageError("--cv: cross-validation trains in one process; leave out --nproc")
    if train_config.kfold and args.val is not None:
        raise UsageError("--val: cross-validation holds out its own slices (--val-fraction sets their size)")
    if args.test_split is not None and args.test is None:
        raise UsageError("--test-split needs --test")
    out = args.out or Path("checkpoints") / datetime.now().strftime("model-%Y%m%d-%H%M%S")
    if out.exists():
        raise UsageError(f"--out {out} already exists")
    if not launched_by_torchrun():
        if train_config.nproc > 1:
            check_nproc(train_config.nproc, train_config.device)
            argv = _without_option(args.argv, "--nproc")
            return subprocess.run(torchrun_command(train_config.nproc, argv), check=False).returncode
        return _train_here(args, model_config, train_config, out)
    with process_group(train_config.device) as ranks:
        # Recorded in the checkpoint: what ran, whichever way torchrun was started.
        train_config = dataclasses.replace(train_config, nproc=ranks.local_world_size)
        return _train_here(args, model_config, train_config, out)


def _train_here(
    args: argparse.Namespace, model_config: ModelConfig, train_config: TrainConfig, out: Path
) -> int:
    """Train in this process, alone or as one rank of a process group; rank 0 prints and saves."""
    from model.device import configure_cpu_threads, resolve_device
    from model.distributed import cpu_threads_per_process, current_ranks
    from model.features import FeatureCache
    from model.progress import ProgressBars
    from model.runs import train_and_save

    ranks = current_ranks()
    if resolve_device(train_config.device).type == "cpu":
        configure_cpu_threads(args.threads or (cpu_threads_per_process(ranks) if ranks.distributed else None))
    dataset = load_dataset(args.data, split=args.split, skip_invalid=args.skip_invalid)
    if dataset.skipped and ranks.is_main:
        print(f"skipped {dataset.skipped} invalid rows: {dataset.skipped_kinds}", file=sys.stderr)
    cache = FeatureCache(args.cache_dir) if args.cache_dir else FeatureCache()
    bars = ProgressBars()
    on_progress = _print_progress_json if args.progress == "json" else bars
    test_set = None
    if args.test is not None:
        test_set = load_dataset(
            args.test, split=args.test_split, labels=dataset.labels, skip_invalid=args.skip_invalid
        )
    if train_config.kfold:
        train_set, val_set = dataset, None
        if args.val_fraction is not None:
            train_config = dataclasses.replace(train_config, val_fraction=args.val_fraction)
    else:
        train_set, val_set = _validation_set(args, dataset, train_config)
    try:
        result, saved = train_and_save(
            out,
            model_config,
            train_config,
            train_set,
            val_set,
            test_set=test_set,
            cache=cache,
            on_progress=on_progress,
            extra={"world_size": ranks.world_size},
        )
    finally:
        bars.close()
    if saved is None:
        return 0
    if result.cv is not None:
        print(cv_table(result.cv))
        print(f"final model: all {len(train_set)} samples, {result.cv['final_epochs']} epochs (median best)")
    else:
        print(f"validation metrics ({len(val_set or ())} samples, best epoch {result.best_epoch}):")
        print(metrics_table(result.metrics))
    if result.test_metrics is not None and test_set is not None:
        print(f"test metrics ({len(test_set)} samples, never used for any decision):")
        print(metrics_table(result.test_metrics))
    print(f"checkpoint saved to {saved}", flush=True)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model.checkpoint import load_checkpoint
    from model.device import configure_cpu_threads
    from model.evaluation import evaluate
    from model.features import FeatureCache

    configure_cpu_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    dataset = load_dataset(args.data, split=args.split, labels=model.labels, skip_invalid=args.skip_invalid)
    metrics = evaluate(model, dataset, cache=FeatureCache(args.cache_dir) if args.cache_dir else None)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{len(dataset)} samples")
        print(metrics_table(metrics))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from model.images import ImageDecodeError
    from model.predictor import Predictor

    if args.image is None and args.text is None:
        raise UsageError("give --image, --text or both")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    image = args.image.read_bytes() if args.image is not None else None
    try:
        prediction = predictor.predict_batch([image], [args.text], explain=True)[0]
    except ImageDecodeError as exc:
        raise UsageError(f"{args.image}: {exc}") from exc
    print(json.dumps(dataclasses.asdict(prediction), indent=2))
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from model.demo_data import write_demo_dataset

    root = write_demo_dataset(args.out, n_per_class=args.n_per_class, seed=args.seed)
    print(f"demo dataset written to {root} (train.jsonl, dev.jsonl, images/)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from model.export import ExportError, export_onnx

    try:
        entry = export_onnx(args.checkpoint, quantize=args.quantize)
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    print(json.dumps({"onnx": entry}, indent=2))
    return 0


_COMMANDS = {
    "demo-data": _demo_data,
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0, or 2 for bad input with a one-line error)."""
    from model.checkpoint import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(argv)
        args.argv = argv  # `train --nproc` runs the same command line again under torchrun
        return _COMMANDS[args.command](args)
    except (UsageError, DatasetError, CheckpointError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

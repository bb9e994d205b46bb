"""``python -m service``: run the API with uvicorn (optionally training the demo model first)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the fusion classifier API. Other settings come from FUSION_* variables or .env.",
    )
    parser.add_argument("--host", help="interface to bind (FUSION_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (FUSION_PORT, default 8000)")
    parser.add_argument(
        "--bootstrap-demo",
        action="store_true",
        help="if no model is active, train the production encoders with a concat head on the built-in"
        " demo dataset first",
    )
    return parser


def bootstrap_demo(
    settings: Settings,
    *,
    model_config: Any = None,
    train_config: Any = None,
    n_per_class: int | None = None,
    show_progress: bool = True,
) -> str | None:
    """Train and activate a demo model unless a version is already active; returns the new version.

    It trains the default recipe (`TrainConfig()`: MiniLM's top two layers fine-tuned over cached image
    features) on the production encoders with a concat head (`ModelConfig(fusion="concat")`); on the
    sentiment demo task it reaches 1.000 validation accuracy (tests/service/test_demo_recipe.py).
    `n_per_class` defaults to `write_demo_dataset`'s; progress bars show on a terminal only.
    """
    from model.config import ModelConfig, TrainConfig
    from model.datasets import load_dataset
    from model.demo_data import write_demo_dataset
    from model.features import FeatureCache
    from model.progress import ProgressBars
    from model.runs import train_and_save
    from service.runtime.model_store import ModelStore

    store = ModelStore(settings.model_dir)
    if store.active_version() is not None:
        print(f"model store {store.root} already has an active version; skipping the demo training")
        return None
    root = settings.data_dir / "datasets" / "demo"
    if not (root / "dev.jsonl").is_file():  # written last: its presence means the dataset is complete
        print(f"writing the demo dataset to {root}")
        write_demo_dataset(root, **({} if n_per_class is None else {"n_per_class": n_per_class}))
    train_set = load_dataset(root, split="train")
    val_set = load_dataset(root, split="dev", labels=train_set.labels)
    print(f"training the demo model on {len(train_set)} demo samples ({len(val_set)} for validation)")
    bars = ProgressBars(disable=None if show_progress else True)
    try:
        result, path = train_and_save(
            store.new_version_path,
            model_config or ModelConfig(fusion="concat"),
            train_config or TrainConfig(device=settings.device),
            train_set,
            val_set,
            cache=FeatureCache(settings.data_dir / "cache" / "features"),
            on_progress=bars,
            extra={"dataset": "demo", "source": "bootstrap-demo"},
        )
    finally:
        bars.close()
    assert path is not None  # one process: it saves
    store.activate(path.name)
    accuracy = {key: (result.metrics.get(key) or {}).get("accuracy", float("nan")) for key in _MODES}
    print(
        f"activated demo model {path.name} (validation accuracy {accuracy['fusion']:.3f};"
        f" image alone {accuracy['image_only']:.3f}, text alone {accuracy['text_only']:.3f})"
    )
    _print_example(settings, path, val_set)
    return path.name


_MODES = ("fusion", "image_only", "text_only")


def _print_example(settings: Settings, checkpoint: Path, val_set: Any) -> None:
    """One request to paste once the server is up, with the answer the new model gives it."""
    from model.predictor import Predictor

    # A positive photo that is grey (neutral): only the caption tells, and the explanation shows it.
    sample = next(
        (s for s in val_set.samples if s.label == "positive" and _is_grey(s.image)), val_set.samples[0]
    )
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    (answer,) = predictor.predict_batch([sample.image.read_bytes()], [sample.text], explain=True)
    image = Path(os.path.relpath(sample.image)) if sample.image.is_relative_to(Path.cwd()) else sample.image
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(
        f"try it: curl -s -F image=@{shlex.quote(str(image))} -F text={shlex.quote(sample.text)}"
        f" 'http://{host}:{settings.port}/predict?explain=true'"
    )
    for name, probabilities in (
        ("answer", answer.probabilities),
        ("image alone", answer.image_only),
        ("text alone", answer.text_only),
    ):
        if probabilities:
            shown = ", ".join(f"{label} {p:.2f}" for label, p in probabilities.items())
            print(f"  {name}: {max(probabilities, key=probabilities.__getitem__)} ({shown})")


def _is_grey(image: Path) -> bool:
    """Whether a demo picture is a neutral (grey) one."""
    from PIL import Image, ImageStat

    with Image.open(image) as picture:
        red, green, blue = ImageStat.Stat(picture.convert("RGB")).median
    return max(red, green, blue) - min(red, green, blue) < 15


def _check_job_database(settings: Settings) -> None:
    """Open the job database once before serving, so a bad FUSION_JOB_DB_URL is one line, not a traceback."""
    from service.runtime.job_db import JobDatabaseError
    from service.runtime.job_store import JobStore

    try:
        JobStore.from_settings(settings).close()
    except JobDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m service`` and the ``fusion-api`` console script."""
    args = _parser().parse_args(argv)
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _check_job_database(settings)  # first: the demo training may take minutes
    if args.bootstrap_demo:
        bootstrap_demo(settings)

    import uvicorn

    from service.app import create_app

    app = create_app(settings)
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"API docs: http://{shown_host}:{settings.port}/docs")
    print(f"Web console: http://{shown_host}:{settings.port}/console/")
    # Our own middleware writes the access log and our handler formats every log line (log_config=None).
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

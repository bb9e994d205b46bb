"""Tests for model.cli: every command through main(argv), and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusion_testkit.factories import make_jpeg
from model.demo_data import write_demo_dataset
from model.device import available_cpus

TINY = [
    "--image-encoder", "cnn", "--text-encoder", "bow", "--no-pretrained", "--fusion", "concat",
    "--image-size", "16", "--hidden-dim", "16", "--embed-dim", "16", "--epochs", "2", "--batch-size", "8",
    "--device", "cpu", "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.cli import main

    root = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["demo-data", str(root), "--n-per-class", "12"]) == 0
    return root


@pytest.fixture(scope="module")
def checkpoint(small_demo: Path) -> Path:
    from model.cli import main

    out = small_demo.parent / "ckpt"
    assert main(["train", str(small_demo), "--out", str(out), *TINY]) == 0
    return out


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from model.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_data_writes_both_splits(small_demo: Path) -> None:
    assert (small_demo / "train.jsonl").read_text().count("\n") == 24
    assert (small_demo / "dev.jsonl").is_file()


def test_train_saves_a_checkpoint_and_prints_all_three_modes(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["train", str(small_demo), "--out", str(tmp_path / "m"), *TINY], capsys)
    assert code == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    for row in ("fusion", "image-only", "text-only"):
        assert any(line.startswith(row) for line in out.splitlines())
    # dev.jsonl beside train.jsonl is the validation set: 4 samples per label.
    assert "validation metrics (8 samples" in out


def test_train_with_val_fraction_splits_the_training_data(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(small_demo / "train.jsonl"), "--val-fraction", "0.25", "--out", str(tmp_path / "m")]
    code, out, _ = run([*args, *TINY], capsys)
    assert code == 0
    assert "validation metrics (6 samples" in out


def test_evaluate_prints_json_reports(
    small_demo: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["evaluate", str(checkpoint), str(small_demo), "--split", "dev", "--json", "--threads", "1"], capsys
    )
    assert code == 0
    reports = json.loads(out)
    assert set(reports) == {"fusion", "image_only", "text_only"}
    assert sum(c["support"] for c in reports["fusion"]["per_class"].values()) == 8


def test_predict_prints_json(small_demo: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = next((small_demo / "images").iterdir())
    code, out, _ = run(["predict", str(checkpoint), "--image", str(image), "--text", "so happy lol"], capsys)
    assert code == 0
    prediction = json.loads(out)
    assert prediction["label"] in ("negative", "positive")
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert prediction["modalities_used"] == ["image", "text"]


def test_cv_prints_every_fold_and_saves_the_final_model(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["train", str(small_demo), "--cv", "2", "--out", str(tmp_path / "m"), *TINY], capsys)
    assert code == 0
    assert "2-fold cross-validation on held-out folds" in out
    assert "  fold 1" in out and "  fold 2" in out and "  mean" in out
    assert "final model: all 24 samples" in out
    assert (tmp_path / "m" / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert len(meta["metrics"]["cv"]["folds"]) == 2


def test_kfold_is_an_alias_of_cv(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["train", str(small_demo), "--kfold", "2", "--out", str(tmp_path / "m"), *TINY], capsys
    )
    assert code == 0 and "2-fold cross-validation" in out


def test_test_split_is_reported_apart(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "train",
        str(small_demo),
        "--val-fraction",
        "0.25",
        "--test",
        str(small_demo),
        "--test-split",
        "dev",
    ]
    code, out, _ = run([*args, "--out", str(tmp_path / "m"), *TINY], capsys)
    assert code == 0
    validation, _, test = out.partition("test metrics (8 samples, never used for any decision):")
    assert "validation metrics (6 samples" in validation  # a quarter of train.jsonl's 24 rows
    assert test and any(line.startswith("fusion") for line in test.splitlines())
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert sum(c["support"] for c in meta["metrics"]["test"]["fusion"]["per_class"].values()) == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cv", "2", "--nproc", "2"], "--cv: cross-validation trains in one process"),
        (["--cv", "1"], "--cv: must be between 2 and 20 folds; got 1"),
        (["--cv", "2", "--val", "x"], "--val: cross-validation holds out its own slices"),
        (["--test-split", "dev"], "--test-split needs --test"),
    ],
)
def test_bad_cv_and_test_options_are_one_line_errors(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = run(["train", str(small_demo), "--out", str(tmp_path / "m"), *TINY, *extra], capsys)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_train_on_a_named_split(small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", str(small_demo), "--split", "dev", "--val-fraction", "0.25"]
    code, out, _ = run([*args, "--out", str(tmp_path / "m"), *TINY], capsys)
    assert code == 0
    assert "validation metrics (2 samples" in out  # a quarter of dev.jsonl's 8 rows


def test_train_with_progress_json_prints_a_line_per_report(
    small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(small_demo), "--out", str(tmp_path / "m"), "--progress", "json", *TINY]
    code, out, _ = run(args, capsys)
    assert code == 0
    reports = [json.loads(line)["progress"] for line in out.splitlines() if line.startswith("{")]
    assert [r["epoch"] for r in reports if r["stage"] == "evaluating"] == [1, 2]
    assert {r["stage"] for r in reports} == {"training", "evaluating"}


def test_train_with_a_checkpoints_config_repeats_its_recipe(
    small_demo: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = checkpoint / "config.json"
    args = ["train", str(small_demo), "--config", str(config), "--out", str(tmp_path / "m"), "--threads", "1"]
    code, _, _ = run(args, capsys)
    assert code == 0
    before, after = json.loads(config.read_text()), json.loads((tmp_path / "m" / "config.json").read_text())
    assert after["model_config"] == before["model_config"]
    assert after["train_config"] == before["train_config"]


def bad_inputs(root: Path, checkpoint: Path) -> dict[str, list[str]]:
    (root / "broken").mkdir()
    (root / "broken" / "train.jsonl").write_text('{"image": "gone.jpg", "text": "t", "label": "x"}\n')
    (root / "garbage.jpg").write_bytes(b"not an image")
    (root / "empty-checkpoint").mkdir()
    (root / "image.jpg").write_bytes(make_jpeg())
    (root / "list-config.json").write_text(json.dumps({"model_config": [1]}))
    broken, many = str(root / "broken"), available_cpus() + 1
    return {
        "missing dataset": ["train", str(root / "nope"), *TINY],
        "invalid dataset": ["train", str(root / "broken"), *TINY],
        "bad option value": ["train", str(root / "broken"), "--lr", "-1"],
        "unknown option": ["train", str(root / "broken"), "--learning-rate", "1"],
        "unknown command": ["fly"],
        "val split without val": ["train", str(root / "broken"), "--val-split", "dev", *TINY],
        "bad checkpoint": ["evaluate", str(root / "empty-checkpoint"), str(root / "broken")],
        "missing checkpoint": ["predict", str(root / "nope"), "--text", "hi"],
        "nothing to predict": ["predict", str(checkpoint)],
        "unreadable image": ["predict", str(checkpoint), "--image", str(root / "garbage.jpg")],
        "missing image": ["predict", str(checkpoint), "--image", str(root / "gone.jpg")],
        "config value not an object": ["train", broken, "--config", str(root / "list-config.json")],
        "batch too small for nproc": ["train", broken, *TINY, "--batch-size", "3", "--nproc", "2"],
        "more processes than CPUs": [
            "train",
            broken,
            *TINY,
            "--nproc",
            str(many),
            "--batch-size",
            str(2 * many),
        ],
    }


CASES = [
    "missing dataset", "invalid dataset", "bad option value", "unknown option", "unknown command",
    "val split without val", "bad checkpoint", "missing checkpoint", "nothing to predict", "unreadable image",
    "missing image", "config value not an object", "batch too small for nproc", "more processes than CPUs",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_nonzero_with_one_line(
    case: str, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(bad_inputs(tmp_path, checkpoint)[case], capsys)
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("config value not an object", "model_config must be an object or null; got [1]"),
        ("batch too small for nproc", "batch_size: must be >= 4"),
        ("more processes than CPUs", f"nproc: {available_cpus() + 1} training processes"),
    ],
)
def test_bad_recipe_error_names_the_field(
    case: str, problem: str, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = run(bad_inputs(tmp_path, checkpoint)[case], capsys)
    assert problem in err


def test_invalid_dataset_error_names_the_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_demo_dataset(tmp_path, n_per_class=2)
    with (tmp_path / "train.jsonl").open("a") as manifest:
        manifest.write('{"image": "images/none.jpg", "text": "t", "label": "negative"}\n')
    code, _, err = run(["train", str(tmp_path), *TINY], capsys)
    assert code != 0
    assert "train.jsonl:5: images/none.jpg not found" in err

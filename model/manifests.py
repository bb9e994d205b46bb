"""Reading the dataset layouts into rows not yet validated: JSONL/CSV manifests and label folders."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from model.dataset_problems import DatasetError, DatasetProblem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
MANIFEST_EXTENSIONS = (".jsonl", ".csv")
COLUMNS = ("image", "text", "label")


@dataclass
class Row:
    """A parsed but not yet validated row."""

    location: str
    image: str
    text: str
    label: str


def find_manifest(directory: Path, split: str | None) -> Path | None:
    """The manifest named `split`, else `train`, else the only one; None for the image-folder layout."""
    manifests = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_EXTENSIONS
    )
    for name in (split,) if split else ("train",):
        named = [p for p in manifests if p.stem == name]
        if named:
            return named[0]
    if split:
        raise DatasetError(
            [DatasetProblem("no_data", str(directory), f"no manifest named {split}.jsonl or .csv")]
        )
    if len(manifests) == 1:
        return manifests[0]
    if manifests:
        names = ", ".join(p.name for p in manifests)
        raise DatasetError(
            [DatasetProblem("no_data", str(directory), f"several manifests ({names}), none train")]
        )
    return None


def read_text(path: Path) -> str:
    """Read a text file as UTF-8, replacing undecodable bytes rather than rejecting the file."""
    return path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")


def read_manifest(manifest: Path) -> tuple[list[Row], list[DatasetProblem]]:
    """Parse a JSONL or CSV manifest into rows and bad-row problems."""
    content = read_text(manifest)
    if manifest.suffix.lower() == ".jsonl":
        return _read_jsonl(manifest.name, content)
    return _read_csv(manifest.name, content)


def _read_jsonl(name: str, content: str) -> tuple[list[Row], list[DatasetProblem]]:
    rows: list[Row] = []
    problems: list[DatasetProblem] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        location = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(DatasetProblem("bad_row", location, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            problems.append(DatasetProblem("bad_row", location, "not a JSON object"))
            continue
        _keep(_make_row(location, record), rows, problems)
    return rows, problems


def _read_csv(name: str, content: str) -> tuple[list[Row], list[DatasetProblem]]:
    reader = csv.DictReader(io.StringIO(content, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        return [], [DatasetProblem("bad_row", f"{name}:1", f"missing columns: {', '.join(missing)}")]
    reader.fieldnames = columns
    rows: list[Row] = []
    problems: list[DatasetProblem] = []
    for record in reader:
        location = f"{name}:{reader.line_num}"
        if None in record or any(record[c] is None for c in COLUMNS):
            problems.append(DatasetProblem("bad_row", location, "wrong number of fields"))
            continue
        _keep(_make_row(location, record), rows, problems)
    return rows, problems


def _keep(row_or_problem: Row | DatasetProblem, rows: list[Row], problems: list[DatasetProblem]) -> None:
    """Append a checked record to the rows or, when it failed its checks, to the problems."""
    if isinstance(row_or_problem, Row):
        rows.append(row_or_problem)
    else:
        problems.append(row_or_problem)


def _make_row(location: str, record: dict) -> Row | DatasetProblem:
    """Check a manifest record's columns and types."""
    missing = [c for c in COLUMNS if c not in record]
    if missing:
        return DatasetProblem("bad_row", location, f"missing columns: {', '.join(missing)}")
    image, text, label = record["image"], record["text"], record["label"]
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(image, str) or not image.strip():
        return DatasetProblem("bad_row", location, "image must be a non-empty string")
    if not isinstance(text, str):
        return DatasetProblem("bad_row", location, "text must be a string")
    if not isinstance(label, str) or not label.strip():
        return DatasetProblem("bad_row", location, "label must be a non-empty string")
    return Row(location, image.strip(), text, label.strip())


def read_image_folders(root: Path) -> tuple[list[Row], list[DatasetProblem]]:
    """Rows of the layout ROOT/<label>/<name>.<image ext> with the caption in ROOT/<label>/<name>.txt."""
    rows: list[Row] = []
    problems: list[DatasetProblem] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        images = {p.stem: p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS}
        captions = {p.stem: p for p in files if p.suffix.lower() == ".txt"}
        for stem, image in images.items():
            location = f"{folder.name}/{image.name}"
            caption = captions.get(stem)
            if caption is None:
                problems.append(DatasetProblem("empty_text", location, f"no caption file {stem}.txt"))
                continue
            if not caption.resolve().is_relative_to(root.resolve()):
                problems.append(
                    DatasetProblem("path_outside_root", location, f"{stem}.txt is outside the dataset")
                )
                continue
            rows.append(Row(location, f"{folder.name}/{image.name}", read_text(caption), folder.name))
        for stem in sorted(captions.keys() - images.keys()):
            location = f"{folder.name}/{stem}.txt"
            problems.append(DatasetProblem("missing_image", location, f"no image file for {stem}.txt"))
    if not rows and not problems:
        problems.append(
            DatasetProblem("no_data", str(root), "no manifest (.jsonl/.csv) and no label folders")
        )
    return rows, problems

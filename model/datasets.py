"""Datasets of (image, text, label) samples: manifest and image-folder layouts, validated up front."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from model.images import ImageDecodeError, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
MANIFEST_EXTENSIONS = (".jsonl", ".csv")
COLUMNS = ("image", "text", "label")
KINDS = (
    "missing_image",
    "unreadable_image",
    "empty_text",
    "unknown_label",
    "duplicate",
    "bad_row",
    "path_outside_root",
    "no_data",
)
# Decoding at a reduced JPEG scale still reads every byte (so truncation is caught) at a fraction of the cost.
_CHECK_DRAFT_SIZE = 32
_EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class Sample:
    """One example: an image file, its text and its label; `location` names its manifest row or path."""

    image: Path
    text: str
    label: str
    location: str
    digest: str = ""  # sha256 of the image bytes (filled by load_dataset)


@dataclass(frozen=True)
class DatasetProblem:
    """One thing wrong with a dataset, e.g. ("missing_image", "train.jsonl:12", "images/a.jpg not found")."""

    kind: str
    location: str
    detail: str

    def __str__(self) -> str:
        return f"{self.location}: {self.detail}" if self.detail else self.location


class DatasetError(ValueError):
    """A dataset failed validation; `.problems` lists every problem and `.counts` counts them per kind."""

    def __init__(self, problems: Sequence[DatasetProblem]) -> None:
        self.problems = list(problems)
        self.counts: dict[str, int] = dict(Counter(p.kind for p in self.problems))
        super().__init__(summarize_problems(self.problems))


def summarize_problems(problems: Sequence[DatasetProblem]) -> str:
    """One line: the first few problems of each kind, with counts (the message of a DatasetError)."""
    parts = []
    for kind, count in Counter(p.kind for p in problems).items():
        examples = [str(p) for p in problems if p.kind == kind][:_EXAMPLES_PER_KIND]
        more = f"; and {count - len(examples)} more" if count > len(examples) else ""
        parts.append(f"{kind} x{count} ({'; '.join(examples)}{more})")
    noun = "problem" if len(problems) == 1 else "problems"
    return f"invalid dataset, {len(problems)} {noun}: " + ", ".join(parts)


@dataclass(frozen=True)
class Dataset:
    """A validated, immutable list of samples with its label order and a content fingerprint."""

    root: Path
    samples: tuple[Sample, ...]
    labels: tuple[str, ...]
    skipped: int = 0
    fingerprint: str = ""
    # The rows dropped by skip_invalid.
    problems: tuple[DatasetProblem, ...] = field(default=(), compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def label_counts(self) -> dict[str, int]:
        """Number of samples per label, in label order (labels without samples count 0)."""
        counts = Counter(s.label for s in self.samples)
        return {label: counts.get(label, 0) for label in self.labels}

    def label_indices(self) -> list[int]:
        """The label of each sample as an index into `labels`."""
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[s.label] for s in self.samples]

    @property
    def skipped_kinds(self) -> dict[str, int]:
        """How many dropped rows there were of each problem kind."""
        return dict(Counter(p.kind for p in self.problems))

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A dataset of the given samples (same root and labels, fingerprint of its own)."""
        samples = tuple(self.samples[i] for i in indices)
        return replace(
            self, samples=samples, skipped=0, problems=(), fingerprint=_fingerprint(samples, self.labels)
        )

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary: sample count, label distribution, skipped rows."""
        return {
            "samples": len(self.samples),
            "labels": list(self.labels),
            "label_counts": self.label_counts(),
            "skipped": self.skipped,
            "skipped_kinds": self.skipped_kinds,
            "fingerprint": self.fingerprint,
        }


@dataclass
class _Row:
    """A parsed but not yet validated row."""

    location: str
    image: str
    text: str
    label: str


def load_dataset(
    path: Path | str,
    *,
    split: str | None = None,
    labels: Sequence[str] | None = None,
    skip_invalid: bool = False,
) -> Dataset:
    """Load and validate a manifest (.jsonl/.csv) or a dataset folder; DatasetError lists every problem.

    With `labels` (e.g. the training labels when loading a validation set) other labels are problems and the
    dataset keeps that label order; otherwise labels are the sorted unique labels found.
    With `skip_invalid` bad rows are dropped and counted in `Dataset.skipped` instead of failing.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError([DatasetProblem("no_data", str(path), "no such file or directory")])
    manifest = path if path.is_file() else _find_manifest(path, split)
    if manifest is None:
        root = path
        rows, problems = _read_image_folders(root)
    else:
        root = manifest.parent
        rows, problems = _read_manifest(manifest)
    samples, row_problems = _validate(root.resolve(), rows, labels)
    problems += row_problems
    if problems and not skip_invalid:
        raise DatasetError(problems)
    if not samples:
        raise DatasetError([*problems, DatasetProblem("no_data", str(path), "no valid samples")])
    label_order = tuple(labels) if labels is not None else tuple(sorted({s.label for s in samples}))
    return Dataset(
        root=root,
        samples=tuple(samples),
        labels=label_order,
        skipped=len(problems),
        fingerprint=_fingerprint(samples, label_order),
        problems=tuple(problems),
    )


def _find_manifest(directory: Path, split: str | None) -> Path | None:
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


def _read_text(path: Path) -> str:
    """Read a text file as UTF-8, replacing undecodable bytes rather than rejecting the file."""
    return path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")


def _read_manifest(manifest: Path) -> tuple[list[_Row], list[DatasetProblem]]:
    """Parse a JSONL or CSV manifest into rows and bad-row problems."""
    content = _read_text(manifest)
    if manifest.suffix.lower() == ".jsonl":
        return _read_jsonl(manifest.name, content)
    return _read_csv(manifest.name, content)


def _read_jsonl(name: str, content: str) -> tuple[list[_Row], list[DatasetProblem]]:
    rows: list[_Row] = []
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


def _read_csv(name: str, content: str) -> tuple[list[_Row], list[DatasetProblem]]:
    reader = csv.DictReader(io.StringIO(content, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        return [], [DatasetProblem("bad_row", f"{name}:1", f"missing columns: {', '.join(missing)}")]
    reader.fieldnames = columns
    rows: list[_Row] = []
    problems: list[DatasetProblem] = []
    for record in reader:
        location = f"{name}:{reader.line_num}"
        if None in record or any(record[c] is None for c in COLUMNS):
            problems.append(DatasetProblem("bad_row", location, "wrong number of fields"))
            continue
        _keep(_make_row(location, record), rows, problems)
    return rows, problems


def _keep(row_or_problem: _Row | DatasetProblem, rows: list[_Row], problems: list[DatasetProblem]) -> None:
    """Append a checked record to the rows or, when it failed its checks, to the problems."""
    if isinstance(row_or_problem, _Row):
        rows.append(row_or_problem)
    else:
        problems.append(row_or_problem)


def _make_row(location: str, record: dict) -> _Row | DatasetProblem:
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
    return _Row(location, image.strip(), text, label.strip())


def _read_image_folders(root: Path) -> tuple[list[_Row], list[DatasetProblem]]:
    """Rows of the layout ROOT/<label>/<name>.<image ext> with the caption in ROOT/<label>/<name>.txt."""
    rows: list[_Row] = []
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
            rows.append(_Row(location, f"{folder.name}/{image.name}", _read_text(caption), folder.name))
        for stem in sorted(captions.keys() - images.keys()):
            location = f"{folder.name}/{stem}.txt"
            problems.append(DatasetProblem("missing_image", location, f"no image file for {stem}.txt"))
    if not rows and not problems:
        problems.append(
            DatasetProblem("no_data", str(root), "no manifest (.jsonl/.csv) and no label folders")
        )
    return rows, problems


@dataclass(frozen=True)
class _ImageCheck:
    """The outcome of reading and decoding one image file."""

    digest: str = ""
    kind: str = ""
    detail: str = ""


def _check_image(path: Path) -> _ImageCheck:
    """Hash and decode one image (at reduced scale), reporting why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _ImageCheck(kind="unreadable_image", detail=f"cannot read ({exc.strerror})")
    try:
        load_image(data, draft_size=_CHECK_DRAFT_SIZE)
    except ImageDecodeError as exc:
        return _ImageCheck(kind="unreadable_image", detail=f"cannot decode ({exc.reason})")
    return _ImageCheck(digest=hashlib.sha256(data).hexdigest())


def _resolve_image(root: Path, name: str) -> Path | None:
    """The image's path under `root`, or None when it is absolute or leads outside (via .. or a symlink)."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        return None
    resolved = (root / posix).resolve()
    return resolved if resolved.is_relative_to(root) else None


def _validate(
    root: Path, rows: list[_Row], labels: Sequence[str] | None
) -> tuple[list[Sample], list[DatasetProblem]]:
    """Check paths, images, texts, labels and duplicates; one problem per bad row."""
    known = set(labels) if labels is not None else None
    problems: list[DatasetProblem] = []
    candidates: list[tuple[_Row, Path]] = []
    for row in rows:
        resolved = _resolve_image(root, row.image)
        if resolved is None:
            problems.append(
                DatasetProblem("path_outside_root", row.location, f"{row.image} is outside the dataset")
            )
        elif not resolved.is_file():
            problems.append(DatasetProblem("missing_image", row.location, f"{row.image} not found"))
        elif not row.text.strip():
            problems.append(DatasetProblem("empty_text", row.location, "text is empty"))
        elif known is not None and row.label not in known:
            problems.append(
                DatasetProblem("unknown_label", row.location, f"label {row.label!r} is not known")
            )
        else:
            candidates.append((row, resolved))

    unique_paths = sorted({path for _, path in candidates})
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        checks = dict(zip(unique_paths, pool.map(_check_image, unique_paths), strict=True))

    samples: list[Sample] = []
    seen: dict[tuple[str, str], _Row] = {}
    for row, path in candidates:
        check = checks[path]
        if check.kind:
            problems.append(DatasetProblem(check.kind, row.location, f"{row.image}: {check.detail}"))
            continue
        first = seen.setdefault((check.digest, row.text), row)
        if first is not row:
            what = "same row as" if first.label == row.label else "same image and text, other label than"
            problems.append(DatasetProblem("duplicate", row.location, f"{what} {first.location}"))
            continue
        samples.append(Sample(path, row.text, row.label, row.location, check.digest))
    order = {row.location: i for i, row in enumerate(rows)}
    problems.sort(key=lambda p: order.get(p.location, -1))
    return samples, problems


def _fingerprint(samples: Sequence[Sample], labels: Sequence[str]) -> str:
    """sha256 over the label order and every sample's image bytes (via its digest), text and label."""
    digest = hashlib.sha256(json.dumps(list(labels)).encode())
    for sample in samples:
        image_digest = sample.digest or hashlib.sha256(sample.image.read_bytes()).hexdigest()
        digest.update(json.dumps([image_digest, sample.text, sample.label]).encode())
    return digest.hexdigest()


def split_dataset(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split into (train, val) with about `fraction` of each label in val (stratified, reproducible)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must be between 0 and 1, got {fraction}")
    rng = random.Random(seed)
    val: set[int] = set()
    for members in _members_by_label(ds).values():
        rng.shuffle(members)
        take = round(len(members) * fraction)
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        val.update(members[:take])
    if not val or len(val) == len(ds):
        raise ValueError(f"fraction: {fraction} leaves an empty split of {len(ds)} samples")
    return ds.subset(i for i in range(len(ds)) if i not in val), ds.subset(sorted(val))


def kfold_datasets(ds: Dataset, k: int, seed: int = 0) -> list[tuple[Dataset, Dataset]]:
    """k stratified (train, val) folds; every sample is in exactly one val fold."""
    if not 2 <= k <= len(ds):
        raise ValueError(f"kfold: must be between 2 and the number of samples ({len(ds)}), got {k}")
    rng = random.Random(seed)
    fold_of = [0] * len(ds)
    offset = 0
    for members in _members_by_label(ds).values():
        rng.shuffle(members)
        for position, index in enumerate(members):
            # Continue the round-robin across labels so that small labels do not all land in fold 0.
            fold_of[index] = (offset + position) % k
        offset += len(members)
    folds = []
    for fold in range(k):
        train = [i for i in range(len(ds)) if fold_of[i] != fold]
        val = [i for i in range(len(ds)) if fold_of[i] == fold]
        folds.append((ds.subset(train), ds.subset(val)))
    return folds


def _members_by_label(ds: Dataset) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for i, sample in enumerate(ds.samples):
        members.setdefault(sample.label, []).append(i)
    return members

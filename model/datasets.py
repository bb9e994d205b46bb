"""Datasets of (image, text, label) samples: manifest and image-folder layouts, validated up front."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from model.dataset_problems import DatasetError, DatasetProblem
from model.images import ImageDecodeError, load_image
from model.manifests import Row, find_manifest, read_image_folders, read_manifest

# Decoding at a reduced JPEG scale still reads every byte (so truncation is caught) at a fraction of the cost.
_CHECK_DRAFT_SIZE = 32


@dataclass(frozen=True)
class Sample:
    """One example: an image file, its text and its label; `location` names its manifest row or path."""

    image: Path
    text: str
    label: str
    location: str
    digest: str = ""  # sha256 of the image bytes (filled by load_dataset)


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
    manifest = path if path.is_file() else find_manifest(path, split)
    if manifest is None:
        root = path
        rows, problems = read_image_folders(root)
    else:
        root = manifest.parent
        rows, problems = read_manifest(manifest)
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
    root: Path, rows: list[Row], labels: Sequence[str] | None
) -> tuple[list[Sample], list[DatasetProblem]]:
    """Check paths, images, texts, labels and duplicates; one problem per bad row."""
    known = set(labels) if labels is not None else None
    problems: list[DatasetProblem] = []
    candidates: list[tuple[Row, Path]] = []
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
    seen: dict[tuple[str, str], Row] = {}
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

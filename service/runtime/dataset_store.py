"""Datasets under <data_dir>/datasets/: uploads extracted safely, validated with the model package, listed."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.atomic import remove_abandoned, temp_folder
from model.dataset_problems import summarize_problems
from model.datasets import Dataset, DatasetError, load_dataset
from model.manifests import MANIFEST_EXTENSIONS
from service.runtime.zip_extract import ZipLimits, ZipRejected, ZipTooLarge, extract_zip

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
_TMP_PREFIX = ".tmp-"


class DatasetStoreError(Exception):
    """Base of the store's errors; `field` names the request field at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class DatasetNotFound(DatasetStoreError):
    """No dataset of that name (or no such split in it)."""


class DatasetExists(DatasetStoreError):
    """A dataset of that name already exists."""


class DatasetInUse(DatasetStoreError):
    """The dataset is read by a queued or running job."""


class UploadTooLarge(DatasetStoreError):
    """The upload or its extracted content is over a size limit."""


class InvalidDataset(DatasetStoreError):
    """The name, the archive or its content is not acceptable."""


@dataclass(frozen=True)
class SplitInfo:
    """One manifest of a dataset (or the whole image-folder layout)."""

    name: str | None  # the manifest stem; None for the image-folder layout
    samples: int
    label_counts: dict[str, int]
    skipped: int  # invalid rows; a job reads the split only with skip_invalid when this is not 0
    fingerprint: str
    problem_counts: dict[str, int] = field(default_factory=dict)  # the invalid rows per problem kind


@dataclass(frozen=True)
class DatasetInfo:
    """What GET /datasets shows about a dataset (its splits that load, and why the others do not)."""

    name: str
    format: str  # "jsonl" | "csv" | "image_folder" | "mixed"
    default_split: str | None
    splits: tuple[SplitInfo, ...]
    size_bytes: int
    created_at: datetime
    error: str | None = None  # why some split (or a bare reference) does not load

    @property
    def default(self) -> SplitInfo | None:
        """The split a bare name refers to, when it loads."""
        if self.format != "image_folder" and self.default_split is None:
            return None
        return next((s for s in self.splits if s.name == self.default_split), None)

    @property
    def samples(self) -> int:
        """Samples of the default split."""
        return self.default.samples if self.default else 0

    @property
    def label_counts(self) -> dict[str, int]:
        """Label distribution of the default split."""
        return dict(self.default.label_counts) if self.default else {}

    def split(self, name: str | None) -> SplitInfo | None:
        """The named split, or the default one for None; None when it does not load."""
        if name is None:
            return self.default
        return next((s for s in self.splits if s.name == name), None)


def check_name(name: str) -> str:
    """Return a valid dataset name or raise InvalidDataset naming the field `name`."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidDataset(
            f"invalid dataset name {name[:80]!r}: use 1-64 lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit",
            field="name",
        )
    return name


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split a dataset reference `name` or `name:split`; raise InvalidDataset when malformed."""
    name, _, split = ref.partition(":")
    if not _NAME_RE.fullmatch(name) or (split and not _NAME_RE.fullmatch(split)) or ref.endswith(":"):
        raise InvalidDataset(f"invalid dataset reference {ref[:80]!r}: expected 'name' or 'name:split'")
    return name, split or None


class DatasetStore:
    """The datasets folder: uploads are extracted into a temp dir, validated, then renamed into place."""

    def __init__(self, data_dir: Path, limits: ZipLimits | None = None) -> None:
        self.root = Path(data_dir) / "datasets"
        self.limits = limits or ZipLimits()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._info_cache: dict[str, tuple[tuple[Any, ...], DatasetInfo]] = {}
        self._remove_stale_temps()

    # ---- reading -------------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Folder of an existing dataset; DatasetNotFound otherwise."""
        path = self.root / check_name(name)
        if not path.is_dir():
            raise DatasetNotFound(f"no dataset named {name!r}")
        return path

    def names(self) -> list[str]:
        """Names of every dataset folder, sorted (temp and hidden folders excluded)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.fullmatch(p.name))

    def info(self, name: str) -> DatasetInfo:
        """Summary of a dataset (cached until its folder changes)."""
        path = self.path(name)
        try:
            signature = _signature(path)
            cached = self._info_cache.get(name)
            if cached is not None and cached[0] == signature:
                return cached[1]
            info = _describe(name, path)
        except FileNotFoundError:  # deleted meanwhile
            raise DatasetNotFound(f"no dataset named {name!r}") from None
        self._info_cache[name] = (signature, info)
        return info

    def list(self) -> list[DatasetInfo]:
        """Summaries of every dataset, by name."""
        infos = []
        for name in self.names():
            with contextlib.suppress(DatasetNotFound):  # deleted while listing
                infos.append(self.info(name))
        return infos

    def resolve(self, ref: str) -> tuple[Path, str | None]:
        """Folder and split of a reference `name` or `name:split`; DatasetNotFound if either is missing."""
        name, split = parse_ref(ref)
        path = self.path(name)
        if split is not None and not any((path / f"{split}{ext}").is_file() for ext in MANIFEST_EXTENSIONS):
            raise DatasetNotFound(f"dataset {name!r} has no split {split!r}")
        return path, split

    def load(self, ref: str, *, labels: Iterable[str] | None = None, skip_invalid: bool = False) -> Dataset:
        """Load and validate the referenced dataset with the model package (raises DatasetError).

        With `skip_invalid` invalid rows are dropped and counted in `Dataset.skipped` instead.
        """
        path, split = self.resolve(ref)
        labels = None if labels is None else tuple(labels)
        return load_dataset(path, split=split, labels=labels, skip_invalid=skip_invalid)

    # ---- writing -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging_file(self) -> Iterator[Path]:
        """A fresh path inside the datasets folder for an upload in transit (in a temp folder this process
        holds, so that a restart after a kill removes it); removed on exit."""
        with _temp_folder(self.root, "upload-") as folder:
            try:
                yield folder / "upload.zip"
            finally:
                shutil.rmtree(folder, ignore_errors=True)

    def create_from_zip(self, name: str, archive: Path, *, skip_invalid: bool = False) -> DatasetInfo:
        """Inspect every zip entry, extract into a temp dir, validate, then rename to `name` atomically.

        Invalid rows refuse the upload unless `skip_invalid` (then they are counted per split).
        """
        check_name(name)
        if (self.root / name).exists():
            raise _exists(name)
        with _temp_folder(self.root) as tmp:
            try:
                _extract(archive, tmp, self.limits)
                info = _describe(name, tmp, strict=True, skip_invalid=skip_invalid)
                with self._lock:
                    if (self.root / name).exists():
                        raise _exists(name)
                    try:
                        os.rename(tmp, self.root / name)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                            raise
                        # The lock is per process: another API replica placed this name since the check.
                        raise _exists(name) from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        # The sample paths were validated under the temp name; the summary is the same under the final one.
        self._info_cache[name] = (_signature(self.root / name), info)
        log.info("dataset %s created: %d samples", name, info.samples)
        return info

    def delete(self, name: str, *, in_use: Iterable[str] = ()) -> None:
        """Remove a dataset, refusing one that a queued or running job reads."""
        path = self.path(name)
        if name in set(in_use):
            raise DatasetInUse(f"dataset {name!r} is used by a queued or running job; cancel it first")
        if path.is_symlink():  # a hand-placed link to a mounted volume: remove the link, not the data
            path.unlink()
        else:
            # Renaming first makes the dataset disappear at once even if deleting its files takes a while.
            with _temp_folder(self.root) as doomed:
                os.rename(path, doomed / name)
                shutil.rmtree(doomed, ignore_errors=True)
        self._info_cache.pop(name, None)
        log.info("dataset %s deleted", name)

    def _remove_stale_temps(self) -> None:
        """Clear the temp folders of uploads and deletes whose process died (a live one holds its lock)."""
        removed = remove_abandoned(self.root, f"{_TMP_PREFIX}*")
        if removed:
            log.warning("removed the temp folders of interrupted uploads or deletes: %s", ", ".join(removed))


def _exists(name: str) -> DatasetExists:
    return DatasetExists(f"a dataset named {name!r} already exists", field="name")


def _temp_folder(parent: Path, kind: str = "") -> contextlib.AbstractContextManager[Path]:
    """A new temp folder under `parent`, locked while in use (`model.atomic.temp_folder`)."""
    return temp_folder(parent / f"{_TMP_PREFIX}{kind}{uuid.uuid4().hex}", mode=0o755)


def _extract(archive: Path, dest: Path, limits: ZipLimits) -> None:
    """Extract the upload, its refusals as the store's errors on the form field `file`."""
    try:
        extract_zip(archive, dest, limits)
    except ZipTooLarge as exc:
        raise UploadTooLarge(str(exc), field="file") from exc
    except ZipRejected as exc:
        raise InvalidDataset(str(exc), field="file") from exc


def _describe(name: str, path: Path, *, strict: bool = False, skip_invalid: bool = False) -> DatasetInfo:
    """Load every split of a dataset folder, counting invalid rows per split.

    With `strict` a split that does not load raises InvalidDataset, and so do invalid rows unless
    `skip_invalid`.
    """
    manifests = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_EXTENSIONS)
    stems = [p.stem for p in manifests]
    split_names: list[str | None]
    if not manifests:
        fmt, default, split_names = "image_folder", None, [None]
    else:
        suffixes = {p.suffix.lower().lstrip(".") for p in manifests}
        fmt = suffixes.pop() if len(suffixes) == 1 else "mixed"
        default = "train" if "train" in stems else (stems[0] if len(stems) == 1 else None)
        split_names = list(stems)
    splits: list[SplitInfo] = []
    errors: list[str] = []
    for split in split_names:
        prefix = f"{split}: " if split is not None and len(split_names) > 1 else ""
        try:
            # Skipping here only counts the invalid rows: jobs and uploads decide whether they may be dropped.
            ds = load_dataset(path, split=split, skip_invalid=True)
        except DatasetError as exc:
            if strict:
                raise InvalidDataset(f"{prefix}{exc}", field="file") from exc
            errors.append(f"{prefix}{exc}")
            continue
        if strict and ds.skipped and not skip_invalid:
            raise InvalidDataset(f"{prefix}{summarize_problems(ds.problems)}", field="file")
        splits.append(
            SplitInfo(split, len(ds), ds.label_counts(), ds.skipped, ds.fingerprint, ds.skipped_kinds)
        )
    if manifests and default is None:
        errors.append("several manifests and none named train: refer to one as name:split")
    return DatasetInfo(
        name=name,
        format=fmt,
        default_split=default,
        splits=tuple(splits),
        size_bytes=_tree_size(path),
        created_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
        error="; ".join(errors) or None,
    )


def _tree_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for file in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, file)).st_size
    return total


def _signature(path: Path) -> tuple[Any, ...]:
    """Cheap change detector: mtimes and sizes of the folder and of its direct entries."""
    parts: list[Any] = [path.stat().st_mtime_ns]
    for child in sorted(path.iterdir()):
        st = child.stat()
        parts.append((child.name, st.st_mtime_ns, st.st_size))
    return tuple(parts)

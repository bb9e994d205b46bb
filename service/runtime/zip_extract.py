"""Safe extraction of an uploaded dataset zip: every entry is checked before a byte is written.

Refused: names with NUL bytes, absolute paths or ``..`` (path traversal), links, devices and encrypted
entries, duplicate names, a file that is also a folder, more entries than allowed, and archives that
expand too much overall or per entry (zip bombs). Writing re-checks the byte budget and never follows
a link, whatever the archive's headers claim.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from model.manifests import MANIFEST_EXTENSIONS
from service.settings import Settings

# Entries below this size are too small to be a decompression bomb whatever their ratio.
_RATIO_MIN_BYTES = 1024 * 1024
_SKIPPED_PREFIXES = ("__MACOSX/",)
_SKIPPED_NAMES = (".DS_Store", "Thumbs.db")
_COPY_CHUNK = 1024 * 1024


class ZipRejected(ValueError):
    """The archive is not a zip, or an entry is unsafe; the message names the entry and the problem."""


class ZipTooLarge(ZipRejected):
    """The archive's content is over the uncompressed size limit."""


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may hold; all of it is checked before anything is extracted."""

    max_uncompressed_bytes: int = 4 * 1024**3
    max_ratio: float = 100.0
    max_entries: int = 200_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ZipLimits:
        """Limits from the service settings."""
        return cls(
            max_uncompressed_bytes=settings.max_dataset_uncompressed_bytes,
            max_ratio=settings.max_zip_ratio,
        )


@dataclass(frozen=True)
class _Entry:
    """A zip member that passed inspection, with its path inside the destination folder."""

    info: zipfile.ZipInfo
    path: PurePosixPath


def extract_zip(archive: Path, dest: Path, limits: ZipLimits) -> None:
    """Check every entry of ``archive``, then write its files under the existing folder ``dest``.

    A single top-level folder that holds the whole dataset (a manifest or label folders) is unwrapped.
    Raises ZipRejected (ZipTooLarge for the size limit); the caller removes ``dest`` on failure.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ZipRejected(f"not a valid zip archive ({exc})") from exc
    with zf:
        _write(zf, _inspect(zf, limits), dest, limits)


def _entry_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """Path of a zip entry inside the dataset; None for entries to skip; ZipRejected if it is unsafe."""
    raw = info.filename
    shown = repr(raw[:200])
    if "\x00" in raw:
        raise ZipRejected(f"zip entry {shown} has a NUL byte in its name")
    name = raw.replace("\\", "/")  # some Windows tools write backslashes; treat them as separators
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ZipRejected(f"zip entry {shown} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ZipRejected(f"zip entry {shown} leaves the archive (path traversal)")
    if not parts or name.startswith(_SKIPPED_PREFIXES) or parts[-1] in _SKIPPED_NAMES:
        return None
    if any(len(part.encode()) > 255 for part in parts) or len(name) > 1024:
        raise ZipRejected(f"zip entry {shown} has a name that is too long")
    return PurePosixPath(*parts)


def _check_entry_type(info: zipfile.ZipInfo) -> None:
    """Refuse links, devices and encrypted entries."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise ZipRejected(f"zip entry {info.filename[:200]!r} is a symbolic link")
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise ZipRejected(f"zip entry {info.filename[:200]!r} is not a regular file")
    if info.flag_bits & 0x1:
        raise ZipRejected(f"zip entry {info.filename[:200]!r} is encrypted")


def _too_large(limits: ZipLimits) -> ZipTooLarge:
    return ZipTooLarge(f"zip content is over the limit of {limits.max_uncompressed_bytes} bytes uncompressed")


def _inspect(zf: zipfile.ZipFile, limits: ZipLimits) -> list[_Entry]:
    """Check every entry before anything is written; return the files to extract (top folder unwrapped)."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ZipRejected(f"zip has {len(infos)} entries, more than {limits.max_entries}")
    files: list[_Entry] = []
    seen: set[PurePosixPath] = set()
    total = compressed = 0
    for info in infos:
        _check_entry_type(info)
        path = _entry_path(info)
        if path is None:
            continue
        if path in seen:
            raise ZipRejected(f"zip has the entry {str(path)!r} more than once")
        seen.add(path)
        if info.is_dir():
            continue
        total += info.file_size
        compressed += info.compress_size
        if total > limits.max_uncompressed_bytes:
            raise _too_large(limits)
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _RATIO_MIN_BYTES and ratio > limits.max_ratio:
            raise ZipRejected(
                f"zip entry {str(path)!r} expands {ratio:.0f}x, more than the allowed {limits.max_ratio:.0f}x"
                " (zip bomb?)"
            )
        files.append(_Entry(info, path))
    if total >= _RATIO_MIN_BYTES and total > limits.max_ratio * max(compressed, 1):
        raise ZipRejected(
            f"zip expands {total / max(compressed, 1):.0f}x, more than the allowed {limits.max_ratio:.0f}x"
            " (zip bomb?)"
        )
    file_paths = {entry.path for entry in files}
    for path in file_paths:
        if any(parent in file_paths for parent in path.parents):
            raise ZipRejected(f"zip entry {str(path)!r} is inside a file of the same name")
    if not files:
        raise ZipRejected("zip archive contains no files")
    return _unwrap(files)


def _unwrap(files: list[_Entry]) -> list[_Entry]:
    """Strip a single top-level folder that holds the whole dataset (a manifest or label folders)."""
    tops = {entry.path.parts[0] for entry in files}
    if len(tops) != 1 or any(len(entry.path.parts) < 2 for entry in files):
        return files
    inner = [entry.path.relative_to(next(iter(tops))) for entry in files]
    looks_like_root = any(
        len(p.parts) > 1 or (len(p.parts) == 1 and p.suffix.lower() in MANIFEST_EXTENSIONS) for p in inner
    )
    if not looks_like_root:  # e.g. the image-folder layout with a single label folder
        return files
    return [_Entry(entry.info, path) for entry, path in zip(files, inner, strict=True)]


def _write(zf: zipfile.ZipFile, entries: list[_Entry], dest: Path, limits: ZipLimits) -> None:
    """Write the inspected entries under `dest`, never following links, with the byte budget re-checked."""
    written = 0
    for entry in entries:
        target = dest.joinpath(*entry.path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL | O_NOFOLLOW: never overwrite and never write through a link, whatever the archive says.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out, zf.open(entry.info) as src:
            while chunk := src.read(_COPY_CHUNK):
                written += len(chunk)
                if written > limits.max_uncompressed_bytes:
                    raise _too_large(limits)
                out.write(chunk)

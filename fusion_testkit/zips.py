"""Builders of real dataset zips (and hostile ones) for the dataset and job tests."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

from fusion_testkit.factories import make_jpeg, make_png
from model.demo_data import write_demo_dataset


def zip_folder(root: Path, *, prefix: str = "") -> bytes:
    """The files under `root` as zip bytes, each entry name prefixed with `prefix`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(root).as_posix())
    return buffer.getvalue()


def demo_zip(workdir: Path, n_per_class: int = 6, *, prefix: str = "") -> bytes:
    """The model package's demo dataset (train.jsonl, dev.jsonl, images/) as zip bytes."""
    root = write_demo_dataset(workdir / "demo-src", n_per_class=n_per_class)
    return zip_folder(root, prefix=prefix)


def zip_entries(entries: dict[str, bytes]) -> bytes:
    """A zip with exactly these entries (names written as given, even hostile ones)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def with_symlink(entries: dict[str, bytes], link_name: str, target: str) -> bytes:
    """A zip with these entries plus a Unix symlink entry pointing at `target`."""
    buffer = io.BytesIO(zip_entries(entries))
    with zipfile.ZipFile(buffer, "a") as zf:
        info = zipfile.ZipInfo(link_name)
        info.create_system = 3  # Unix, so that the mode bits in external_attr count
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buffer.getvalue()


def valid_entries() -> dict[str, bytes]:
    """A small valid manifest dataset: two labels, three samples each, real JPEG and PNG files."""
    entries: dict[str, bytes] = {}
    rows = []
    for i in range(6):
        label = "cat" if i % 2 else "dog"
        name = f"images/{i}.jpg" if i % 3 else f"images/{i}.png"
        colour = (40 * i, 255 - 30 * i, 90)
        entries[name] = make_jpeg(colour) if name.endswith(".jpg") else make_png(colour)
        rows.append(f'{{"image": "{name}", "text": "caption number {i}", "label": "{label}"}}')
    entries["train.jsonl"] = ("\n".join(rows) + "\n").encode()
    return entries


def tree(root: Path) -> set[str]:
    """Every path under `root`, relative, directories included (to prove nothing else was written)."""
    return {os.path.relpath(os.path.join(folder, name), root) for folder, dirs, files in os.walk(root)
            for name in dirs + files}  # fmt: skip

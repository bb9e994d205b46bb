"""On-disk model store: one checkpoint directory per version and an atomically replaced active pointer."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.atomic import remove_abandoned_writes, write_atomic
from model.checkpoint import load_checkpoint, read_checkpoint_meta, remove_abandoned_saves

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelStoreError(Exception):
    """Base class of the store's errors."""


class UnknownVersionError(ModelStoreError, LookupError):
    """No version of that name in the store."""

    def __init__(self, version: str) -> None:
        super().__init__(f"model version {version!r} is not in the store")
        self.version = version


class InvalidCheckpointError(ModelStoreError, ValueError):
    """A version exists but its checkpoint does not load."""

    def __init__(self, version: str, detail: str) -> None:
        super().__init__(f"model version {version!r} cannot be loaded: {detail}")
        self.version = version
        self.detail = detail


@dataclass(frozen=True)
class ModelVersion:
    """One version in the store: its checkpoint metadata (``config.json``) or why it could not be read."""

    version: str
    path: Path
    created_at: datetime
    meta: dict[str, Any] | None
    error: str | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """Validation metrics stored with the checkpoint (empty when unknown)."""
        metrics = (self.meta or {}).get("metrics")
        return metrics if isinstance(metrics, dict) else {}


class ModelStore:
    """Versions under ``<root>/versions/<version>/`` and the active pointer ``<root>/active.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.active_file = self.root / "active.json"

    def version_path(self, version: str) -> Path:
        """Directory of ``version``; rejects names that could leave the store."""
        if not _VERSION_RE.match(version):
            raise UnknownVersionError(version)
        return self.versions_dir / version

    def exists(self, version: str) -> bool:
        """Whether ``version`` has a checkpoint directory."""
        try:
            return (self.version_path(version) / "config.json").is_file()
        except UnknownVersionError:
            return False

    def get(self, version: str) -> ModelVersion:
        """Metadata of one version; ``UnknownVersionError`` if absent."""
        if not self.exists(version):
            raise UnknownVersionError(version)
        return self._describe(self.version_path(version))

    def list_versions(self) -> list[ModelVersion]:
        """Every version, oldest first (version names sort by creation time)."""
        if not self.versions_dir.is_dir():
            return []
        return [
            self._describe(path)
            for path in sorted(self.versions_dir.iterdir())
            if path.is_dir() and _VERSION_RE.match(path.name) and (path / "config.json").is_file()
        ]

    def new_version_path(self) -> Path:
        """A fresh, unused directory path whose name sorts after every earlier one (not created)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        while True:
            now = datetime.now(UTC)
            name = f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(3)}"
            path = self.versions_dir / name
            if not path.exists():
                return path

    def remove_abandoned_saves(self) -> list[str]:
        """Remove what writers killed mid-write left (never listed): the temporary folders of checkpoint
        saves in ``versions/``, and the temporary files of atomic writes (a version's ONNX graph or
        ``config.json``, the active pointer) anywhere in the store; their paths in the store."""
        if not self.root.is_dir():
            return []
        saves = remove_abandoned_saves(self.versions_dir) if self.versions_dir.is_dir() else []
        return [f"versions/{name}" for name in saves] + remove_abandoned_writes(self.root)

    def active_version(self) -> str | None:
        """Name of the active version, or None when nothing was ever activated."""
        try:
            raw = self.active_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            version = json.loads(raw)["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelStoreError(f"{self.active_file} is not a valid pointer: {exc}") from exc
        if not isinstance(version, str):
            raise ModelStoreError(f"{self.active_file}: 'version' must be a string")
        return version

    def validate(self, version: str) -> Path:
        """Load the checkpoint on CPU to prove it is usable; ``InvalidCheckpointError`` otherwise."""
        if not self.exists(version):
            raise UnknownVersionError(version)
        path = self.version_path(version)
        try:
            load_checkpoint(path, device="cpu")
        except Exception as exc:  # any failure to load means the version must not go live
            raise InvalidCheckpointError(version, str(exc) or type(exc).__name__) from exc
        return path

    def activate(self, version: str) -> None:
        """Make ``version`` active after checking that it loads; the pointer is unchanged on failure."""
        self.validate(version)
        self.set_active(version)

    def set_active(self, version: str) -> None:
        """Point ``active.json`` at ``version`` (already validated by the caller), atomically."""
        if not self.exists(version):
            raise UnknownVersionError(version)
        payload = {"version": version, "activated_at": datetime.now(UTC).isoformat()}
        text = json.dumps(payload) + "\n"
        write_atomic(self.active_file, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=True)

    def _describe(self, path: Path) -> ModelVersion:
        created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        try:
            meta = read_checkpoint_meta(path)
        except Exception as exc:  # a broken version is listed with its error rather than hiding the list
            return ModelVersion(path.name, path, created, None, str(exc) or type(exc).__name__)
        with contextlib.suppress(TypeError, ValueError):
            created = datetime.fromisoformat(str(meta.get("created_at")))
        return ModelVersion(path.name, path, created, meta)

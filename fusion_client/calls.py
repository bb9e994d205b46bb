"""What each API call sends and how its answer is read: shared by `Client` and `AsyncClient`."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

import httpx

from fusion_client.errors import FusionAPIError, retry_after_seconds
from fusion_client.schemas import (
    ActiveModel,
    Dataset,
    Health,
    ItemError,
    JobEvent,
    JobInfo,
    ModelList,
    ModelVersion,
    Prediction,
)

T = TypeVar("T")


class PILImageLike(Protocol):
    """Anything with PIL's `save(fp, format)`, e.g. a `PIL.Image.Image`."""

    def save(self, fp: Any, format: str | None = None) -> None: ...


ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | PILImageLike
"""A path, the file's bytes, a binary file object or a PIL image."""
BatchItem = tuple[ImageInput | None, str | None] | Mapping[str, Any]
"""`(image, text)` or `{"image": ..., "text": ...}`; either may be None when the model copes without it."""

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)
# Already compressed: stored as they are in the zip of an uploaded folder.
_STORED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".zip"}


@dataclass
class Call(Generic[T]):
    """One HTTP request and the function that turns its successful answer into a typed result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[Any, ...]]] | None = None

    def request_args(self) -> dict[str, Any]:
        """Keyword arguments of `httpx.Client.request`; file objects are rewound, so a retry resends them."""
        for _, (_, content, *_) in self.files or ():
            if hasattr(content, "seek"):
                content.seek(0)
        return {"params": self.params or None, "json": self.json, "data": self.data, "files": self.files}


def image_part(image: ImageInput, name: str = "image") -> tuple[str, bytes, str]:
    """`(filename, bytes, content type)` of an image given as a path, bytes, a file object or a PIL image."""
    if isinstance(image, bytes | bytearray | memoryview):
        content = bytes(image)
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        content, name = path.read_bytes(), path.name
    elif hasattr(image, "read"):
        content = image.read()
        name = Path(str(getattr(image, "name", name))).name
    elif hasattr(image, "save"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")  # lossless: the service sees exactly these pixels
        content, name = buffer.getvalue(), f"{name}.png"
    else:
        raise TypeError(
            f"image: expected a path, bytes, a binary file or a PIL image, got {type(image).__name__}"
        )
    if not isinstance(content, bytes):
        raise TypeError("image: the file object must be opened in binary mode")
    return name, content, content_type(content)


def content_type(content: bytes) -> str:
    """The image type its first bytes announce (the service checks the bytes themselves anyway)."""
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if content.startswith(magic)), "application/octet-stream")


def raise_for_error(response: httpx.Response) -> None:
    """Raise `FusionAPIError` unless the answer is a success."""
    if response.is_error:
        raise FusionAPIError.from_response(response)


def retry_delay(response: httpx.Response, attempt: int, max_retries: int, max_wait_s: float) -> float | None:
    """Seconds to wait before retrying a 503 that carries `Retry-After`, or None to give up."""
    if response.status_code != 503 or attempt >= max_retries:
        return None
    wait = retry_after_seconds(response)
    return None if wait is None or wait > max_wait_s else wait


def _model(cls: type[T]) -> Callable[[httpx.Response], T]:
    return lambda response: cls.model_validate(response.json())  # type: ignore[attr-defined]


def predict(image: ImageInput | None, text: str | None, explain: bool) -> Call[Prediction]:
    """`POST /predict` with one image and/or text."""
    files = [("image", image_part(image))] if image is not None else None
    data = {"text": text} if text is not None else None
    return Call(
        "POST", "/predict", _model(Prediction), {"explain": "true"} if explain else {}, None, data, files
    )


def _batch_answer(response: httpx.Response) -> list[Prediction | ItemError]:
    return [
        ItemError.model_validate(item["error"]) if "error" in item else Prediction.model_validate(item)
        for item in response.json()["predictions"]
    ]


def predict_batch(items: Sequence[BatchItem], explain: bool) -> Call[list[Prediction | ItemError]]:
    """`POST /predict/batch` as multipart: repeated `images` and `texts`, an empty part for a missing one."""
    files: list[tuple[str, tuple[Any, ...]]] = []
    texts: list[str] = []
    for n, item in enumerate(items):
        image, text = (item.get("image"), item.get("text")) if isinstance(item, Mapping) else item
        # A part without a filename is a form field, and an empty one stands for "no image".
        part: tuple[Any, ...] = image_part(image, f"item{n}") if image is not None else (None, b"")
        files.append(("images", part))
        texts.append("" if text is None else text)
    if not files:
        raise ValueError("items: at least one item is needed")
    params = {"explain": "true"} if explain else {}
    return Call("POST", "/predict/batch", _batch_answer, params, None, {"texts": texts}, files)


@contextmanager
def dataset_archive(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """The dataset as an open zip file: the zip itself, or a folder zipped into a temporary file."""
    source = Path(path)
    if source.is_file():
        with source.open("rb") as archive:
            yield archive
        return
    if not source.is_dir():
        raise FileNotFoundError(f"path: {source} is neither a zip file nor a folder")
    with tempfile.TemporaryFile(suffix=".zip") as archive:
        with zipfile.ZipFile(archive, "w") as bundle:
            for file in sorted(source.rglob("*")):
                relative = file.relative_to(source)
                if file.is_file() and not any(part.startswith(".") for part in relative.parts):
                    stored = file.suffix.lower() in _STORED_SUFFIXES
                    bundle.write(
                        file, relative.as_posix(), zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                    )
        archive.seek(0)
        yield archive


def upload_dataset(name: str, archive: IO[bytes], skip_invalid: bool) -> Call[Dataset]:
    """`POST /datasets`: the zip is streamed from its file, never read into memory."""
    data = {"name": name, "skip_invalid": "true" if skip_invalid else "false"}
    files = [("file", (f"{name}.zip", archive, "application/zip"))]
    return Call("POST", "/datasets", _model(Dataset), data=data, files=files)


def train(
    dataset: str,
    params: Mapping[str, Any] | None,
    validation: str | float | None,
    test: str | None,
    cv: int | Mapping[str, Any] | None,
    promote: str,
    skip_invalid: bool,
) -> Call[JobInfo]:
    """`POST /jobs`; optional fields are sent only when given, so the service's defaults apply.

    `cv` is the number of folds (or the API's `{"folds": k}` object).
    """
    body: dict[str, Any] = {"dataset": dataset, "promote": promote}
    folds = {"folds": cv} if isinstance(cv, int) else cv
    optional = {"params": params, "validation": validation, "test": test, "cv": folds}
    body.update({key: value for key, value in optional.items() if value is not None})
    if skip_invalid:
        body["skip_invalid"] = True
    return Call("POST", "/jobs", _model(JobInfo), json=body)


def get_job(job_id: str) -> Call[JobInfo]:
    """`GET /jobs/{id}`."""
    return Call("GET", f"/jobs/{job_id}", _model(JobInfo))


def cancel_job(job_id: str) -> Call[JobInfo]:
    """`POST /jobs/{id}/cancel`."""
    return Call("POST", f"/jobs/{job_id}/cancel", _model(JobInfo))


def dataset(name: str) -> Call[Dataset]:
    """`GET /datasets/{name}`."""
    return Call("GET", f"/datasets/{name}", _model(Dataset))


def models() -> Call[ModelList]:
    """`GET /models`."""
    return Call("GET", "/models", _model(ModelList))


def active_model() -> Call[ActiveModel]:
    """`GET /models/active`."""
    return Call("GET", "/models/active", _model(ActiveModel))


def activate(version: str) -> Call[ModelVersion]:
    """`POST /models/{version}/activate`."""
    return Call("POST", f"/models/{version}/activate", _model(ModelVersion))


def health(live: httpx.Response, ready: httpx.Response) -> Health:
    """Combine the answers of `/health/live` and `/health/ready` (503 there means not ready, not an error)."""
    raise_for_error(live)
    if ready.status_code == 503:
        return Health(live=True, ready=False, reason=FusionAPIError.from_response(ready).message)
    raise_for_error(ready)
    body = ready.json()
    return Health(live=True, ready=True, model_version=body.get("model_version"), device=body.get("device"))


class EventDecoder:
    """Turns the lines of a `text/event-stream` into `JobEvent`s (comments and keep-alives are skipped)."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> JobEvent | None:
        """Take one line (without its newline); returns an event when a blank line completes one."""
        if not line:
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            return JobEvent(event=event, job=JobInfo.model_validate_json(data)) if data else None
        if line.startswith(":"):
            return None
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            self._event = value
        elif key == "data":
            self._data.append(value)
        return None


class ProgressBar:
    """A tqdm bar fed with job snapshots: items while encoding, then epochs."""

    def __init__(self, job_id: str, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm  # only needed for the bar

            self._bar = tqdm(total=1, desc=f"job {job_id[:8]}", dynamic_ncols=True)

    def update(self, job: JobInfo) -> None:
        """Show the job's stage, epoch, step and loss."""
        if self._bar is None:
            return
        p = job.progress
        if p is None:
            queued = f" (position {job.queue_position})" if job.queue_position else ""
            self._bar.set_description_str(f"{job.status}{queued}")
        elif p.stage == "encoding":
            self._bar.total = max(1, p.steps)
            self._bar.n = min(p.step, self._bar.total)
            self._bar.set_description_str("encoding")
        else:  # training, evaluating, done: the bar counts epochs
            within = {"training": p.fraction, "evaluating": 1.0}.get(p.stage, 1.0)
            self._bar.total = max(1, p.epochs)
            self._bar.n = round(min(self._bar.total, p.epoch - 1 + within), 2)
            self._bar.set_description_str(f"{p.stage} epoch {p.epoch}/{p.epochs}")
        if p is not None and p.loss is not None:
            self._bar.set_postfix(loss=f"{p.loss:.4f}", refresh=False)
        if job.finished:
            # The last snapshot can come after the epochs' own ones were missed (a fast job): the history
            # says how many epochs ran, and a job that succeeded fills the bar.
            ran = job.history[-1].get("epoch") if job.history else None
            if p is not None and isinstance(ran, int):
                self._bar.total = max(1, p.epochs)
                self._bar.n = self._bar.total if job.status == "succeeded" else min(ran, self._bar.total)
                self._bar.set_description_str(f"{job.status} after epoch {ran}/{p.epochs}")
            else:
                self._bar.set_description_str(job.status)
        self._bar.refresh()

    def close(self) -> None:
        """Close the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

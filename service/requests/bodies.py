"""Reading request bodies with limits: multipart forms whose errors name the field, bounded JSON."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.types import Message

from service.errors import APIError

OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and part headers, JSON punctuation


def max_text_bytes(max_chars: int) -> int:
    """Largest UTF-8 encoding of ``max_chars`` characters (4 bytes each at most)."""
    return max_chars * 4


def check_declared_length(request: Request, limit: int, too_large: Callable[[], APIError]) -> None:
    """Raise ``too_large()`` before reading a byte when the Content-Length header is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()


def _limited(request: Request, limit: int, too_large: Callable[[], APIError]) -> Request:
    """The same request, but reading more than ``limit`` body bytes raises ``too_large()``."""
    check_declared_length(request, limit, too_large)
    received = 0
    receive = request.receive

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
        return message

    return Request(request.scope, limited_receive)


def require_content_type(request: Request, *accepted: str) -> str:
    """The request's media type if it is one of ``accepted``; 415 naming what is expected otherwise."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        got = media_type or "no Content-Type"
        raise APIError(415, "unsupported_media_type", f"expected {' or '.join(accepted)}, got {got}")
    return media_type


def malformed_multipart(problem: str) -> APIError:
    """The 400 for a multipart body that does not parse; ``problem`` says what is wrong with it."""
    return APIError(400, "malformed_multipart", f"malformed multipart body: {problem}")


def require_closing_boundary(seen: bool) -> None:
    """Refuse a multipart body cut off before its closing boundary (python-multipart drops the cut-off part
    without a word, so both parsers note whether the boundary arrived and ask here)."""
    if not seen:
        raise malformed_multipart("it ends before the closing boundary")


class _CompleteMultiPartParser(MultiPartParser):
    """Starlette's parser, noting whether the closing boundary arrived (it silently drops a cut-off part)."""

    complete = False

    def on_end(self) -> None:
        """Called by the multipart parser only once the closing boundary has been read."""
        self.complete = True
        super().on_end()


async def read_multipart(
    request: Request,
    *,
    max_body_bytes: int,
    max_text_bytes: int,
    max_parts: int,
    text_field: str,
    too_large: Callable[[], APIError],
) -> FormData:
    """Parse a multipart body; a non-file part over ``max_text_bytes`` is a 413 naming ``text_field``.

    (Starlette's own ``request.form()`` turns that case into a bare 400 with a 1 MB default.)
    The caller must ``await form.close()``.
    """
    limited = _limited(request, max_body_bytes, too_large)
    parser = _CompleteMultiPartParser(
        limited.headers,
        limited.stream(),
        max_files=max_parts,
        max_fields=max_parts,
        max_part_size=max_text_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Part exceeded maximum size"):
            message = f"{text_field}: too long (a text field may hold at most {max_text_bytes} bytes)"
            raise APIError(413, "text_too_long", message, text_field) from exc
        if exc.message.startswith("Too many"):
            raise APIError(413, "too_many_parts", f"too many form parts (at most {max_parts})") from exc
        raise malformed_multipart(exc.message) from exc
    try:
        require_closing_boundary(parser.complete)
    except APIError:
        await form.close()
        raise
    return form


async def read_body(request: Request, *, max_body_bytes: int, too_large: Callable[[], APIError]) -> bytes:
    """The whole body, refusing more than ``max_body_bytes``."""
    return await _limited(request, max_body_bytes, too_large).body()


async def read_upload(upload: UploadFile) -> bytes:
    """All bytes of an uploaded file part."""
    await upload.seek(0)
    return await upload.read()

"""Streaming multipart reader for big uploads: the file part goes straight to disk under a byte limit.

Starlette's form parser spools file parts to the system temp directory with no size limit, so a
dataset zip is parsed here instead: it is written, while it streams in, to a path the caller chose
(inside the data directory) and refused as soon as it passes the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.errors import APIError
from service.requests.bodies import (
    OVERHEAD_BYTES,
    check_declared_length,
    malformed_multipart,
    require_closing_boundary,
)

_MAX_FIELD_BYTES = 4096
_MAX_PARTS = 16


@dataclass
class StreamedForm:
    """What arrived: the text fields, and the file part's size and name (None when it was absent)."""

    fields: dict[str, str] = field(default_factory=dict)
    file_bytes: int | None = None
    filename: str | None = None


class _Reader:
    """Callback target of python-multipart's parser for one request."""

    def __init__(self, file_field: str, dest: Path, max_file_bytes: int) -> None:
        self.file_field = file_field
        self.dest = dest
        self.max_file_bytes = max_file_bytes
        self.form = StreamedForm()
        self.parts = 0
        self.finished = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._value = bytearray()
        self._file: IO[bytes] | None = None

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise APIError(422, "too_many_fields", f"more than {_MAX_PARTS} form fields")
        self._headers = {}
        self._name = None
        self._value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field = bytearray()
        self._header_value = bytearray()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise malformed_multipart("a part has no 'Content-Disposition: form-data'")
        name = _decode(options[b"name"], "a form field name")
        self._name = name
        if name == self.file_field:
            if self.form.file_bytes is not None:
                raise APIError(422, "duplicate_field", f"{name}: given more than once", name)
            filename = options.get(b"filename")
            self.form.filename = None if filename is None else _decode(filename, name)
            self.form.file_bytes = 0
            # A fresh path: never overwrite anything, never write through a link.
            fd = os.open(self.dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            self._file = os.fdopen(fd, "wb")
        elif name in self.form.fields:
            raise APIError(422, "duplicate_field", f"{name}: given more than once", name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            assert self.form.file_bytes is not None
            self.form.file_bytes += end - start
            if self.form.file_bytes > self.max_file_bytes:
                raise _too_large(self.file_field, self.max_file_bytes)
            self._file.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > _MAX_FIELD_BYTES:
            message = f"{self._name}: longer than {_MAX_FIELD_BYTES} bytes"
            raise APIError(422, "field_too_long", message, self._name)

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            self.form.fields[self._name] = _decode(bytes(self._value), self._name)

    def on_end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError(422, "invalid_encoding", f"{what}: not valid UTF-8", what) from None


def _too_large(field_name: str, limit: int) -> APIError:
    message = f"{field_name}: upload is over the limit of {limit} bytes"
    return APIError(413, "payload_too_large", message, field_name)


async def stream_form_to_file(
    request: Request, *, file_field: str, dest: Path, max_file_bytes: int
) -> StreamedForm:
    """Parse a multipart/form-data body, writing the part named `file_field` to the new file `dest`.

    The byte limit holds while the body streams in; 415 when the body is not multipart, 413 when the
    file is too big, 400 when the body is malformed or cut short, 422 for duplicated or bad fields.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        message = f"expected a multipart/form-data body with a '{file_field}' file"
        raise APIError(415, "unsupported_media_type", message)
    check_declared_length(
        request, max_file_bytes + OVERHEAD_BYTES, lambda: _too_large(file_field, max_file_bytes)
    )
    reader = _Reader(file_field, dest, max_file_bytes)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_end": reader.on_end,
        },
    )
    try:
        async for chunk in request.stream():
            if chunk and not reader.finished:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise malformed_multipart(str(exc)) from None
    finally:
        reader.close()
    require_closing_boundary(reader.finished)
    return reader.form

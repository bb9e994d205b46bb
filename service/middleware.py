"""The request middleware: request id in and out, one access-log line, request metrics, JSON 500s (507s)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body, insufficient_storage
from service.logging_setup import access_log, request_id_var

if TYPE_CHECKING:
    from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID_RE.match(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI (so streaming responses pass through untouched): request id in and out, access log,
    request metrics, and a JSON 500 without traceback for anything a route did not handle (a 507 when it was
    a write that ran out of disk space)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            full = insufficient_storage(exc)
            if full is None:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                status, body = 500, error_body("internal_error", "internal server error; see the server log")
            else:  # the operator's problem, not a bug: one line naming the failed write, no traceback
                log.error("%s %s: out of storage: %s", scope["method"], scope["path"], exc)
                status, body = full.status, error_body(full.code, full.message, full.field)
            if response_started:
                raise  # headers are out: the server can only drop the connection
            await self._send_error(send, request_id, status, body)
        finally:
            duration = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %.1fms',
                request_id,
                scope["method"],
                scope["path"],
                status,
                duration * 1000,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
            self.metrics.observe_request(scope["method"], route, status, duration)
            request_id_var.reset(token)

    @staticmethod
    async def _send_error(send: Send, request_id: str, status: int, error: dict[str, Any]) -> None:
        body = json.dumps(error).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

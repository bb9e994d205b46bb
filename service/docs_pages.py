"""The docs pages never reach beyond this server: a Content-Security-Policy on /docs and /redoc.

The assets are served locally (fastapi-offline), but ReDoc's bundle still links its logo from
cdn.redoc.ly; the policy keeps the browser from asking any other host, so the pages work offline and
tell no third party who reads them.
"""

from __future__ import annotations

from typing import Any

POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"
)
PAGES = frozenset({"/docs", "/redoc"})


class DocsPolicyMiddleware:
    """Pure ASGI middleware adding `Content-Security-Policy` to the docs pages' responses."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in PAGES:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"content-security-policy", POLICY.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)

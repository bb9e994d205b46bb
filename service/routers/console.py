"""The web console: static files under ``/console/`` (a client of the public API) and ``/`` leading to it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "static" / "console"

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> RedirectResponse:
    """Send a browser that opens the service's address to the console."""
    return RedirectResponse("/console/", status_code=307)


@router.api_route("/console", methods=["GET", "HEAD"])
async def console_without_slash() -> RedirectResponse:
    """The console's relative links need the trailing slash."""
    return RedirectResponse("/console/", status_code=307)


def mount_console(app: FastAPI) -> None:
    """Serve the console's files (``index.html`` for ``/console/``) and the redirects to it."""
    app.include_router(router)
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

"""The app's routes and OpenAPI document, read at collection time without side effects on logging."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from service.app import create_app
from service.settings import Settings


def unstarted_app(settings: Settings | None = None) -> FastAPI:
    """An app whose lifespan never runs (nothing is loaded), with the root logger left as it was.

    `create_app` installs the service's log handler and level, which must not leak from the collection
    of one test module into the others.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return create_app(settings or Settings(_env_file=None))  # type: ignore[call-arg]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI document the app serves at /openapi.json."""
    return unstarted_app(settings).openapi()


def routes_with_methods(app: FastAPI, methods: set[str]) -> list[tuple[str, str]]:
    """(method, path template) of every route, included routers' too, accepting one of `methods`."""
    return sorted(
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        for method in (route.methods or set()) & methods
    )

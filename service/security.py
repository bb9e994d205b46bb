"""API-key auth: ``Authorization: Bearer <key>``, compared in constant time, never logged or echoed."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.deps import SettingsDep
from service.errors import APIError
from service.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    description="The API key (FUSION_API_KEY). Needed on mutating routes when a key is configured.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_key(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    # compare_digest even when nothing was sent, so timing says nothing about the key
    if not secrets.compare_digest(given, expected):
        raise APIError(
            401,
            "unauthorized",
            "missing or invalid API key; send 'Authorization: Bearer <key>'",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(settings: SettingsDep, credentials: BearerCredentials) -> None:
    """Dependency for mutating routes: passes when no key is configured or the right one is sent."""
    _check_key(settings, credentials)


async def require_predict_key(settings: SettingsDep, credentials: BearerCredentials) -> None:
    """Dependency for predict routes: checks the key only when ``require_key_for_predict`` is set."""
    if settings.require_key_for_predict:
        _check_key(settings, credentials)


RequireKey = Depends(require_api_key)
"""Use as ``dependencies=[RequireKey]`` on mutating routes."""
PredictAuth = Depends(require_predict_key)
"""Use as ``dependencies=[PredictAuth]`` on predict routes."""

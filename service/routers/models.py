"""Model versions in the store: list, show the active one, activate (also the rollback)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service.deps import ModelHolderDep, ModelLoaderDep, ModelStoreDep
from service.errors import APIError
from service.runtime.model_store import InvalidCheckpointError, ModelStore, ModelStoreError
from service.schemas import examples
from service.schemas.common import INSUFFICIENT_STORAGE, UNAUTHORIZED, error_responses, example_response
from service.schemas.models import ActiveModelPublic, ModelListPublic, ModelVersionPublic
from service.security import RequireKey

router = APIRouter(prefix="/models", tags=["models"])

VersionPath = Annotated[
    str,
    Path(
        description="A version name as listed by `GET /models`",
        max_length=128,
        openapi_examples={"a version": {"value": examples.VERSION}},
    ),
]
_UNKNOWN = (404, "unknown_version", f"model version {examples.VERSION!r} is not in the store", "version")


def _active_version(store: ModelStore) -> str | None:
    try:
        return store.active_version()
    except ModelStoreError as exc:
        raise APIError(500, "store_error", str(exc)) from exc


def _not_found(version: str) -> APIError:
    return APIError(404, "unknown_version", f"model version {version!r} is not in the store", "version")


@router.get("", summary="List model versions", responses={200: example_response(examples.MODEL_LIST)})
def list_models(store: ModelStoreDep, holder: ModelHolderDep) -> ModelListPublic:
    """Every version in the store (oldest first) with its validation metrics, and which one is active."""
    active = _active_version(store)
    return ModelListPublic(
        active=active,
        serving=holder.version,
        versions=[ModelVersionPublic.from_version(entry, active) for entry in store.list_versions()],
    )


@router.get(
    "/active",
    summary="Show the active model version",
    responses={
        200: example_response(examples.ACTIVE_MODEL),
        **error_responses((404, "no_active_version", "no model version is active", None)),
    },
)
def active_model(store: ModelStoreDep, holder: ModelHolderDep) -> ActiveModelPublic:
    """The version the store's active pointer names, and what this replica is serving right now."""
    active = _active_version(store)
    if active is None or not store.exists(active):
        raise APIError(404, "no_active_version", "no model version is active")
    predictor = holder.predictor
    return ActiveModelPublic(
        **ModelVersionPublic.from_version(store.get(active), active).model_dump(),
        serving=predictor.version if predictor is not None else None,
        device=str(predictor.device) if predictor is not None else None,
        runtime=predictor.runtime if predictor is not None else None,
    )


@router.post(
    "/{version}/activate",
    summary="Activate a model version (also the rollback)",
    dependencies=[RequireKey],
    responses={
        200: example_response(examples.MODEL_VERSION, "The version, now active and serving"),
        **error_responses(
            UNAUTHORIZED,
            _UNKNOWN,
            (
                409,
                "invalid_checkpoint",
                "model.safetensors: tensor 'head.0.weight' has shape [2, 64], the config expects [2, 256]",
                "version",
            ),
            (422, "validation_error", "version: String should have at most 128 characters", "version"),
            INSUFFICIENT_STORAGE,
        ),
    },
)
async def activate_model(
    version: VersionPath, store: ModelStoreDep, loader: ModelLoaderDep
) -> ModelVersionPublic:
    """Load and warm up `version`, then switch to it without dropping requests in flight (they finish on
    the previous version). Activating an older version is the rollback. A checkpoint that does not load
    is refused with 409 and the active version stays as it was."""
    if not store.exists(version):
        raise _not_found(version)
    try:
        await loader.activate(version)
    except InvalidCheckpointError as exc:
        raise APIError(409, "invalid_checkpoint", str(exc), "version") from exc
    except LookupError as exc:  # deleted between the check and the load
        raise _not_found(version) from exc
    return ModelVersionPublic.from_version(store.get(version), version)

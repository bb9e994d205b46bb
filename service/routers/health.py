"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ModelHolderDep, ModelLoaderDep
from service.errors import APIError
from service.schemas import examples
from service.schemas.common import error_responses, example_response
from service.schemas.health import LiveStatus, ReadyStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="Liveness probe", responses={200: example_response(examples.LIVE)})
async def live() -> LiveStatus:
    """Answers 200 as long as the process serves HTTP, with or without a model."""
    return LiveStatus()


@router.get(
    "/ready",
    summary="Readiness probe",
    responses={
        200: example_response(examples.READY),
        **error_responses(
            (503, "not_ready", "no model version is active yet", None),
            (503, "not_ready", "loading model version 20261202-011103-524377-9ce606", None),
        ),
    },
)
async def ready(holder: ModelHolderDep, loader: ModelLoaderDep) -> ReadyStatus:
    """200 once a model is loaded and warmed up (also while a new version is swapped in);
    503 with the reason otherwise (empty store, loading, broken checkpoint)."""
    predictor = holder.predictor
    if predictor is None:
        raise APIError(503, "not_ready", loader.not_ready_reason or "no model is loaded")
    return ReadyStatus(model_version=predictor.version, device=str(predictor.device))

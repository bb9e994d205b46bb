"""The textbook baseline for the serving benchmark: one request = one decode + one forward in the handler.

A plain FastAPI ``def`` endpoint (run in Starlette's thread pool) calls ``Predictor.predict_batch`` on the
single uploaded item: no micro-batching, no decode pool, no thread tuning. Same checkpoint, same response
schema as the service, so the two differ only in how they schedule the work.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile

from model.images import ImageDecodeError
from model.predictor import Predictor
from service.schemas.predict import PredictionPublic


def create_naive_app(checkpoint: Path, device: str = "auto") -> FastAPI:
    """An app that loads ``checkpoint`` once at start-up and predicts inline in its handler."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        predictor.warmup()
        app.state.predictor = predictor
        yield

    app = FastAPI(title="Naive fusion classifier", lifespan=lifespan)

    @app.post("/predict")
    def predict(
        request: Request, image: Annotated[UploadFile, File()], text: Annotated[str, Form()]
    ) -> PredictionPublic:
        """Decode, preprocess and classify the one uploaded pair right here."""
        predictor: Predictor = request.app.state.predictor
        try:
            [prediction] = predictor.predict_batch([image.file.read()], [text])
        except (ImageDecodeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        return PredictionPublic(
            label=prediction.label,
            probabilities=prediction.probabilities,
            model_version=predictor.version,
            modalities_used=prediction.modalities_used,  # type: ignore[arg-type]
            image_only=None,
            text_only=None,
            gate=None,
        )

    @app.get("/health/ready")
    def ready() -> dict[str, str]:
        """Serving once the lifespan has loaded the model (uvicorn accepts no request before that)."""
        return {"status": "ready"}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.naive_server --checkpoint DIR [--host 127.0.0.1] [--port 8001] [--device cpu]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive_server", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)

    import uvicorn

    uvicorn.run(create_naive_app(args.checkpoint, args.device), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

"""Example bodies shown on the docs page; tests check that each one validates against its schema."""

from __future__ import annotations

from typing import Any

VERSION = "20261202-011103-524377-9ce606"
JOB_ID = "5f0c3a1e9b7d4c2a8e6f1b3d5a7c9e0f"
_CREATED = "2026-12-02T01:11:03Z"

PREDICTION: dict[str, Any] = {
    "label": "positive",
    "probabilities": {"negative": 0.03, "positive": 0.97},
    "model_version": VERSION,
    "modalities_used": ["image", "text"],
    "image_only": None,
    "text_only": None,
    "gate": None,
}
PREDICTION_EXPLAINED: dict[str, Any] = {
    **PREDICTION,
    "image_only": {"label": "positive", "probabilities": {"negative": 0.08, "positive": 0.92}},
    "text_only": {"label": "positive", "probabilities": {"negative": 0.21, "positive": 0.79}},
}
BATCH_PREDICTION: dict[str, Any] = {
    "predictions": [
        PREDICTION,
        {"error": {"code": "invalid_image", "message": "images[1]: the file is empty", "field": "images[1]"}},
    ]
}
BATCH_JSON_REQUEST: dict[str, Any] = {
    "items": [{"image_base64": "/9j/4AAQSkZJRgABAQAAAQABAAD...", "text": "best day ever"}, {"text": "so sad"}]
}
_SPLIT: dict[str, Any] = {
    "name": "train",
    "samples": 600,
    "label_counts": {"negative": 300, "positive": 300},
    "skipped": 0,
    "problem_counts": {},
    "fingerprint": "3f1d0c6b8a2e4f57",
}
DATASET: dict[str, Any] = {
    "name": "demo",
    "format": "jsonl",
    "default_split": "train",
    "samples": 600,
    "label_counts": {"negative": 300, "positive": 300},
    "splits": [_SPLIT, {**_SPLIT, "name": "dev", "samples": 150, "fingerprint": "9a4e2b7c1d0f3e68",
                        "label_counts": {"negative": 75, "positive": 75}}],
    "size_bytes": 1843200,
    "created_at": _CREATED,
    "error": None,
}  # fmt: skip
DATASET_LIST: dict[str, Any] = {"datasets": [DATASET]}
JOB_REQUEST: dict[str, Any] = {
    "dataset": "demo",
    "validation": "demo:dev",
    "params": {"epochs": 10, "fusion": "concat"},
    "promote": "if_better",
}
JOB: dict[str, Any] = {
    "id": JOB_ID,
    "status": "running",
    "dataset": "demo",
    "validation": "demo:dev",
    "test": None,
    "cv": None,
    "params": {"epochs": 10, "fusion": "concat", "batch_size": 32, "lr": 0.0003},
    "promote": "if_better",
    "skip_invalid": False,
    "created_at": _CREATED,
    "started_at": "2026-12-02T01:11:04Z",
    "finished_at": None,
    "queue_position": None,
    "cancel_requested": False,
    "progress": {"stage": "training", "epoch": 3, "epochs": 10, "step": 12, "steps": 19, "loss": 0.214,
                 "eta_s": 41.0, "fraction": 0.63},
    "history": [{"epoch": 1, "loss": 0.61, "val": {"accuracy": 0.91, "macro_f1": 0.91}},
                {"epoch": 2, "loss": 0.32, "val": {"accuracy": 0.98, "macro_f1": 0.98}}],
    "metrics": None,
    "model_version": None,
    "promoted": False,
    "error": None,
}  # fmt: skip
JOB_QUEUED: dict[str, Any] = {
    **JOB,
    "status": "queued",
    "started_at": None,
    "queue_position": 1,
    "progress": None,
    "history": [],
}
JOB_CANCELLING: dict[str, Any] = {**JOB, "cancel_requested": True}
JOB_LIST: dict[str, Any] = {
    "jobs": [JOB],
    "counts": {"queued": 0, "running": 1, "succeeded": 4, "failed": 0, "cancelled": 1},
}
JOB_EVENTS = (
    f'event: progress\ndata: {{"id": "{JOB_ID}", "status": "running", ...}}\n\n'
    ": keep-alive\n\n"
    f'event: end\ndata: {{"id": "{JOB_ID}", "status": "succeeded", ...}}\n\n'
)
MODEL_VERSION: dict[str, Any] = {
    "version": VERSION,
    "active": True,
    "created_at": _CREATED,
    "labels": ["negative", "positive"],
    "image_encoder": "efficientnet_lite0",
    "text_encoder": "minilm",
    "fusion": "concat",
    "modalities": ["image", "text"],
    "supports_missing_modality": True,
    "metrics": {
        "fusion": {"accuracy": 1.0},
        "image_only": {"accuracy": 0.84},
        "text_only": {"accuracy": 0.83},
    },
    "dataset_fingerprint": "3f1d0c6b8a2e4f57",
    "train_config": {"epochs": 30, "batch_size": 32, "lr": 0.0003, "seed": 0},
    "error": None,
}
MODEL_LIST: dict[str, Any] = {"active": VERSION, "serving": VERSION, "versions": [MODEL_VERSION]}
ACTIVE_MODEL: dict[str, Any] = {**MODEL_VERSION, "serving": VERSION, "device": "cpu"}
LIVE: dict[str, Any] = {"status": "live"}
READY: dict[str, Any] = {"status": "ready", "model_version": VERSION, "device": "cpu"}
METRICS = (
    "# HELP http_requests_total HTTP requests by method, route template and status\n"
    "# TYPE http_requests_total counter\n"
    'http_requests_total{method="POST",route="/predict",status="200"} 42.0\n'
)

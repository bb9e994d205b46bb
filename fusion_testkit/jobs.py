"""Job params that train in seconds, shared by the tests and the reliability scripts."""

from __future__ import annotations

from typing import Any

# Job params (POST /jobs "params") that train in a few seconds on two cores: cnn + bow at 32 px.
TINY_JOB_PARAMS: dict[str, Any] = {
    "image_encoder": "cnn",
    "text_encoder": "bow",
    "fusion": "gated",
    "pretrained": False,
    "image_size": 32,
    "hidden_dim": 16,
    "embed_dim": 16,
    "max_text_tokens": 16,
    "batch_size": 16,
    "patience": 0,
}

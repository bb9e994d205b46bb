"""The client's promise: importable and usable with only httpx and pydantic (no torch, no server code)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fusion_testkit.factories import make_jpeg
from fusion_testkit.live_server import serve

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "torchvision", "fastapi", "starlette", "uvicorn", "model", "service", "numpy", "PIL")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ImportError(f"blocked import of {{name}}")
            return None

    sys.meta_path.insert(0, Blocker())
    import fusion_client
    from fusion_client import AsyncClient, Client, FusionAPIError

    with Client(sys.argv[1]) as client:
        try:
            client.predict(open(sys.argv[2], "rb"), "no model here")
        except FusionAPIError as exc:
            print(exc.status, exc.code)
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in {blocked!r})
    print("leaked:", leaked)
    """
)


def test_client_imports_and_calls_with_torch_fastapi_and_the_server_blocked(tmp_path: Path) -> None:
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(_env_file=None, model_dir=tmp_path / "m", data_dir=tmp_path / "d", start_worker=False)  # type: ignore[call-arg]
    image = tmp_path / "photo.jpg"
    image.write_bytes(make_jpeg())
    with serve(create_app(settings)) as url:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(blocked=BLOCKED), url, str(image)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["503 not_ready", "leaked: []"]

"""A real `python -m service` on 127.0.0.1 over a temporary store, for the reliability scripts: tiny model
versions, request bodies, and clean-up of every process started (worker included).

Nothing happens on import: a script calls `kill_all_on_exit()` once, at the start of its `main`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from fusion_testkit.factories import make_jpeg, save_tiny_checkpoint
from fusion_testkit.processes import HOST, ManagedProcess, children, wait_ready
from model.demo_data import write_demo_dataset
from service.runtime.model_store import ModelStore

REPO = Path(__file__).resolve().parents[1]
STOP_AT_DIR = Path(__file__).resolve().parent / "stop_at"

_started: list[ServiceProcess] = []


def make_versions(model_dir: Path, count: int, *, activate_first: bool = True, **shape: Any) -> list[str]:
    """Save `count` untrained checkpoints (different random weights; tiny unless `shape` says otherwise)."""
    store = ModelStore(model_dir)
    versions = [save_tiny_checkpoint(store.new_version_path(), **shape).name for _ in range(count)]
    if activate_first:
        store.activate(versions[0])
    return versions


def place_demo_dataset(data_dir: Path, n_per_class: int = 16) -> str:
    """The demo dataset under the data directory as `demo`."""
    write_demo_dataset(data_dir / "datasets" / "demo", n_per_class=n_per_class)
    return "demo"


def predict_files(index: int, image: bytes | None = None) -> list[tuple[str, Any]]:
    """A multipart /predict body: a JPEG (a colour that varies with `index`, or `image`) and a text."""
    data = image if image is not None else make_jpeg(((37 * index) % 256, (91 * index) % 256, 120))
    return [("image", (f"{index}.jpg", data, "image/jpeg")), ("text", (None, f"caption number {index}"))]


def python_path(*first: Path) -> str:
    """A PYTHONPATH that imports this checkout's packages (after `first`), whatever the venv installed."""
    return os.pathsep.join(filter(None, [*map(str, first), str(REPO), os.environ.get("PYTHONPATH")]))


def stop_at_env(target: str, process: str = "service.worker") -> dict[str, str]:
    """Settings that make `python -m <process>` stop itself (SIGSTOP) at its first call of `target`
    (`module:Qualified.name`): see fusion_testkit/stop_at/sitecustomize.py."""
    return {"PYTHONPATH": python_path(STOP_AT_DIR), "TESTKIT_STOP_AT": target, "TESTKIT_STOP_IN": process}


def is_worker(pid: int) -> bool:
    """Whether `pid` is alive and a training worker (`python -m service.worker`)."""
    try:
        return b"service.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class ServiceProcess:
    """`python -m service` on 127.0.0.1:`port` with the given FUSION_* settings (and any other variables),
    run from `root`."""

    def __init__(self, root: Path, port: int, settings: dict[str, str]) -> None:
        self.root = root
        self.port = port
        self.url = f"http://{HOST}:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_")}
        env.update(
            {
                "FUSION_HOST": HOST,
                "FUSION_PORT": str(port),
                "FUSION_MODEL_DIR": str(root / "models"),
                "FUSION_DATA_DIR": str(root / "data"),
                "FUSION_DEVICE": "cpu",
                "FUSION_LOG_LEVEL": "warning",
                "PYTHONPATH": python_path(),  # the server runs this checkout's code, not another's
                **settings,
            }
        )
        self.env = env
        self.process: ManagedProcess | None = None
        self.workers: set[int] = set()  # every worker child seen, so that none outlives the script

    def start(self, ready_timeout_s: float = 120.0, probe: str = "/health/ready") -> ServiceProcess:
        """Start the server (cwd `root`: no stray .env is read) and wait until `probe` answers 200.

        `/health/live` for a server expected to start without a model it can serve.
        """
        command = [sys.executable, "-m", "service", "--host", HOST, "--port", str(self.port)]
        log = self.root / f"server-{len(_started)}.log"
        self.process = ManagedProcess(command, env=self.env, cwd=self.root, log=log)
        _started.append(self)
        wait_ready(self.process, self.url + probe, ready_timeout_s)
        self.note_workers()
        return self

    @property
    def pid(self) -> int:
        """Process id of the server."""
        assert self.process is not None
        return self.process.pid

    def note_workers(self) -> list[int]:
        """The server's worker children now (remembered for the clean-up)."""
        found = [pid for pid in children(self.pid) if is_worker(pid)] if self.process else []
        self.workers.update(found)
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Send `sig` to the server alone and wait for it (SIGKILL after `timeout_s`); its exit code."""
        if self.process is None:
            return None
        proc = self.process.proc
        if proc.poll() is None:
            self.note_workers()
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout_s)
        self.process.stop()  # SIGKILL if it is still there; closes the log
        return proc.returncode

    def kill_everything(self) -> None:
        """SIGKILL the server and every worker it had (those still alive)."""
        if self.process is not None:
            if self.process.proc.poll() is None:
                self.note_workers()
            self.process.stop(grace_s=0.0)
        for pid in self.workers:
            if is_worker(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def kill_all() -> None:
    """SIGKILL every server started so far and every worker each one had."""
    for server in _started:
        server.kill_everything()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kill_all()
    raise SystemExit(128 + signum)


def kill_all_on_exit() -> None:
    """Kill every server (and worker) this process starts when it exits, on SIGTERM and SIGINT too."""
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

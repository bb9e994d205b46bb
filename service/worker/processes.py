"""Training under torchrun for jobs with `nproc` > 1: the process group, its output relay, its stop.

The worker runs `python -m model train` under torchrun in a work folder of the job's, relays rank 0's
progress lines (`model.progress.progress_line`) to the job, terminates the process group on cancel or
stop, and reads back the checkpoint the processes wrote (`model.runs.load_run`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from service.worker.errors import JobError

if TYPE_CHECKING:
    from model.config import ModelConfig, TrainConfig
    from model.datasets import Dataset
    from model.features import FeatureCache
    from model.progress import Progress, ProgressCallback
    from model.training import TrainResult

log = logging.getLogger("service.worker")

_STOP_CHECK_EVERY_S = 0.5
# How long torchrun gets to stop its training processes after SIGTERM, then again after SIGKILL, and
# then how long their output may take to drain: three times this at most, which the API's stop
# timeout (`WorkerSupervisor`) allows for, so that the worker can stop torchrun and re-queue its job.
TERMINATE_WAIT_S = 5.0


class TorchrunTrainer:
    """Trains like `model.training.train`, in `train_config.nproc` processes under torchrun.

    `data_args` are the `python -m model train` options naming the job's datasets (and the feature
    cache); the recipe goes to the processes as a config file in the job's work folder.
    """

    def __init__(self, job_id: str, work_dir: Path, data_args: list[str]) -> None:
        self.job_id = job_id
        self.work_dir = work_dir
        self.data_args = data_args

    def __call__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None = None,
        *,
        cache: FeatureCache | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train in the processes; returns the model they wrote. The datasets are loaded there again."""
        from model.checkpoint import CheckpointError
        from model.distributed import check_nproc, torchrun_command
        from model.runs import load_run

        try:
            check_nproc(train_config.nproc, train_config.device)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Named after the job, so that `remove_stale_work_dirs` can tell whose it is.
        with tempfile.TemporaryDirectory(prefix=f"{self.job_id}-", dir=self.work_dir) as tmp:
            work = Path(tmp)
            config = work / "config.json"
            recipe = {"model_config": model_config.to_dict(), "train_config": train_config.to_dict()}
            config.write_text(json.dumps(recipe), encoding="utf-8")
            args = ["train", *self.data_args, "--config", str(config), "--out", str(work / "model")]
            run_training_processes(
                torchrun_command(train_config.nproc, [*args, "--progress", "json"]),
                self.job_id,
                on_progress or (lambda progress: None),
                should_stop or (lambda: False),
            )
            try:
                result, meta = load_run(work / "model")
            except CheckpointError as exc:
                raise JobError(f"the training processes left no usable model: {exc}") from exc
        # The processes loaded the datasets again; a different fingerprint means they changed meanwhile.
        if meta["dataset_fingerprint"] != train_set.fingerprint:
            raise JobError("the training data changed while the job ran; run the job again")
        return result


def remove_stale_work_dirs(work_dir: Path, running: Callable[[], Iterable[str]]) -> None:
    """Delete the torchrun work folders of jobs not `running()` (left behind by a worker that was killed)."""
    if not work_dir.is_dir():
        return
    # Listed before asking the store: a folder seen here was made after its job was claimed, so a job
    # still running (on any worker sharing this data directory) is among the running ones.
    folders = list(work_dir.iterdir())
    running_ids = set(running())
    for folder in folders:
        job_id = folder.name.rpartition("-")[0]
        if job_id not in running_ids:
            log.info("removing %s, left behind by job %s", folder, job_id or "?")
            shutil.rmtree(folder, ignore_errors=True)


def run_training_processes(
    command: list[str],
    job_id: str,
    on_progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
) -> None:
    """Run a torchrun `command` to its end, relaying its progress; TrainingCancelled when `should_stop()`.

    Its own session, so that stopping it signals torchrun, which stops its training processes. torchrun
    also gets SIGTERM when this worker dies, however it dies: a parent-death signal, which the kernel
    ties to the calling thread (it outlives the process: it waits here until the process has ended).
    """
    from model.distributed import parent_death_signal
    from model.training import TrainingCancelled

    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",  # a stray non-UTF-8 byte from a training process must not stop the relay
        start_new_session=True,
        preexec_fn=parent_death_signal(signal.SIGTERM),
    )
    tail: deque[str] = deque(maxlen=20)
    relay = threading.Thread(
        target=_relay_output, args=(process.stdout, job_id, on_progress, tail), name=f"relay-{job_id[:8]}"
    )
    relay.daemon = True
    relay.start()
    try:
        while True:
            try:
                process.wait(timeout=_STOP_CHECK_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                if should_stop():
                    raise TrainingCancelled() from None
    finally:
        if process.poll() is None:
            _terminate(process)
        # Bounded: a training process stuck in the kernel may hold the pipe open even after SIGKILL.
        relay.join(timeout=TERMINATE_WAIT_S)
    if process.returncode != 0:
        errors = [line for line in tail if line.startswith("error: ")]
        detail = (errors or list(tail) or ["no output"])[-1]
        raise JobError(f"the training processes failed (exit status {process.returncode}): {detail}")


def _relay_output(
    stream: IO[str], job_id: str, on_progress: Callable[[Progress], None], tail: deque[str]
) -> None:
    """Read the training processes' output: progress lines go to `on_progress`, the rest to the log."""
    from model.progress import parse_progress_line

    for raw in stream:
        line = raw.rstrip()
        # Whatever a line holds (or a store hiccup), the reading goes on: the processes would block on a
        # full pipe.
        try:
            progress = parse_progress_line(line)
            if progress is not None:
                on_progress(progress)
            elif line:
                log.info("job %s: %s", job_id, line)
                tail.append(line)
        except Exception:
            log.warning("job %s: output line not relayed: %.200s", job_id, line, exc_info=True)


def _terminate(process: subprocess.Popen[str]) -> None:
    """SIGTERM to torchrun's process group (it stops its training processes), SIGKILL if it lingers.

    The training processes run in sessions of their own; a killed torchrun takes them along through
    their parent-death signal (`model.distributed.process_group`).
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=TERMINATE_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()

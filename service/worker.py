"""The training worker (`python -m service.worker`): claims queued jobs one at a time and runs them.

A separate process from the API: it reads datasets from the data directory, trains with
`model.training.train`, writes progress to the job store, saves the checkpoint into the model store
and promotes it per the job's `promote`. The API notices the new active version on its own.

A job with `nproc` > 1 trains data-parallel in that many processes: the worker runs `python -m model
train` under torchrun, relays rank 0's JSON progress lines to the job store, terminates the process
group on cancel or stop, and then stores the checkpoint those processes wrote like its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from model.datasets import DatasetError, split_dataset
from model.device import configure_cpu_threads
from service.logging_setup import configure_logging
from service.runtime.dataset_store import DatasetLimits, DatasetStore, DatasetStoreError
from service.runtime.job_db import JobDatabaseError
from service.runtime.job_store import Job, JobStore
from service.runtime.model_store import ModelStore, ModelStoreError
from service.schemas.jobs import TrainParams
from service.settings import Settings

if TYPE_CHECKING:
    from model.config import ModelConfig, TrainConfig
    from model.datasets import Dataset
    from model.training import Progress, TrainResult

log = logging.getLogger("service.worker")

HEARTBEAT_S = 5.0
# A running job whose worker (on another host, or of unknown pid) has been silent this long is dead.
STALE_AFTER_S = 60.0
_SWEEP_EVERY_S = 30.0
_PROGRESS_EVERY_S = 0.5
_CANCEL_CHECK_EVERY_S = 0.5
_LOG_EVERY_S = 5.0
# How long torchrun gets to stop its training processes after SIGTERM, then again after SIGKILL, and
# then how long their output may take to drain: three times this at most, which the API's stop
# timeout (`WorkerSupervisor`) allows for, so that the worker can stop torchrun and re-queue its job.
TERMINATE_WAIT_S = 5.0


class JobError(Exception):
    """A job failure whose message is meant for the job's owner as it is."""


class JobLost(Exception):
    """The job stopped running on this worker (another worker declared it dead): record nothing more."""


def make_worker_id(pid: int, token: str) -> str:
    """The id a worker records on the jobs it claims: host, pid and a token unique to this start."""
    return f"{socket.gethostname()}:{pid}:{token}"


def worker_alive(worker_id: str) -> bool | None:
    """Whether the worker process behind `worker_id` is alive; None when that cannot be told from here."""
    host, _, rest = worker_id.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():  # an earlier start of this same process slot (e.g. pid 1 in a container)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeat:
    """Beats a running job's heartbeat from a thread, so that long silent stages do not look dead."""

    def __init__(self, jobs: JobStore, job_id: str, worker_id: str) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._worker_id = worker_id
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(HEARTBEAT_S):
            try:
                if not self._jobs.heartbeat(self._job_id, self._worker_id) and not self._done.is_set():
                    # Finished a moment ago, or declared dead by another worker (then the training's stop
                    # check ends the job, and says so).
                    log.info("job %s: no longer running on this worker; heartbeats stop", self._job_id)
                    return
            except Exception:  # a busy database must not kill the job; the next beat retries
                log.warning("heartbeat of job %s failed", self._job_id, exc_info=True)


class _ProgressWriter:
    """`on_progress` for `train`: throttled snapshots and the epoch history to the store, log lines."""

    def __init__(self, jobs: JobStore, job_id: str) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.history: list[dict[str, Any]] = []
        self._written = 0.0
        self._logged = 0.0
        self._stage = ""

    def __call__(self, progress: Progress) -> None:
        snapshot = {
            key: value for key, value in asdict(progress).items() if key not in ("metrics", "fold", "folds")
        }
        epoch_done = progress.metrics is not None
        if epoch_done:
            self.history.append({"epoch": progress.epoch, "loss": progress.loss, "val": progress.metrics})
        now = time.monotonic()
        if epoch_done or progress.stage != self._stage or now - self._written >= _PROGRESS_EVERY_S:
            self.jobs.update_progress(self.job_id, snapshot, self.history if epoch_done else None)
            self._written = now
        if epoch_done or progress.stage != self._stage or now - self._logged >= _LOG_EVERY_S:
            self._log(progress)
            self._logged = now
        self._stage = progress.stage

    def _log(self, p: Progress) -> None:
        loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
        eta = f" eta {p.eta_s:.0f}s" if p.eta_s is not None else ""
        val = " val " + " ".join(f"{k} {v:.3f}" for k, v in p.metrics.items()) if p.metrics else ""
        log.info(
            "job %s: %s epoch %d/%d step %d/%d%s%s%s",
            self.job_id,
            p.stage,
            p.epoch,
            p.epochs,
            p.step,
            p.steps,
            loss,
            val,
            eta,
        )


class Worker:
    """Runs queued jobs until stopped; `run_once` runs a single one (used by tests)."""

    def __init__(
        self, settings: Settings, *, worker_id: str | None = None, parent_pid: int | None = None
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or make_worker_id(os.getpid(), uuid.uuid4().hex[:8])
        self.parent_pid = parent_pid
        data_dir = settings.data_dir
        self.jobs = JobStore.from_settings(settings)
        self.datasets = DatasetStore(data_dir, DatasetLimits.from_settings(settings))
        self.models = ModelStore(settings.model_dir)
        self.cache_dir = data_dir / "cache" / "features"
        self.work_dir = data_dir / "cache" / "jobs"  # one folder per job that trains under torchrun
        self._stop = threading.Event()
        self._last_sweep = 0.0

    def close(self) -> None:
        """Release the job database's connections (after `run` or the last `run_once`)."""
        self.jobs.close()

    def stop(self) -> None:
        """Finish soon: a running job stops at its next step and goes back to the queue."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether the worker was asked to stop, or lost the API process that started it."""
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            if not self._stop.is_set():
                log.warning("parent process %s is gone; stopping", self.parent_pid)
            self._stop.set()
        return self._stop.is_set()

    def recover(self) -> list[str]:
        """Fail the running jobs of workers that died (dead pid on this host, or silent for too long)."""
        self._last_sweep = time.monotonic()
        failed: list[str] = []
        for job in self.jobs.running_jobs():
            if job.worker_id is None or job.worker_id == self.worker_id:
                continue
            alive = worker_alive(job.worker_id)
            silent_s = time.time() - (job.heartbeat_at or job.started_at or 0.0)
            if alive is False:
                reason = f"worker {job.worker_id} died while running this job"
            elif alive is None and silent_s > STALE_AFTER_S:
                reason = f"worker {job.worker_id} stopped sending heartbeats {silent_s:.0f} s ago"
            else:
                continue
            failed += self.jobs.fail_worker_jobs(job.worker_id, reason)
            log.warning("job %s failed: %s", job.id, reason)
        return failed

    def run(self) -> None:
        """Claim and run jobs until `stop()` (or SIGTERM)."""
        log.info(
            "worker %s started (data %s, models %s)",
            self.worker_id,
            self.settings.data_dir,
            self.settings.model_dir,
        )
        self.recover()
        self._remove_stale_work_dirs()
        while not self.stopping:
            if self.run_once() is None:
                if time.monotonic() - self._last_sweep > _SWEEP_EVERY_S:
                    self.recover()
                self._stop.wait(self.settings.worker_poll_interval_s)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> Job | None:
        """Claim the next queued job and run it to the end; returns the final record, None if none queued."""
        job = self.jobs.claim_next(self.worker_id)
        if job is None:
            return None
        log.info(
            "job %s: started on %s (validation %s, promote %s)",
            job.id,
            job.dataset,
            job.validation,
            job.promote,
        )
        with _Heartbeat(self.jobs, job.id, self.worker_id):
            self._run(job)
        return self.jobs.get(job.id)

    def _run(self, job: Job) -> None:
        from model.training import TrainingCancelled

        try:
            self._train_and_store(job)
        except TrainingCancelled:
            if self.jobs.cancel_requested(job.id):
                recorded = self.jobs.mark_cancelled(job.id, worker_id=self.worker_id)
                outcome = "cancelled; nothing was written to the model store"
            else:
                recorded = self.jobs.requeue(job.id, worker_id=self.worker_id)
                outcome = "worker stopping; job put back in the queue"
            if recorded:
                log.info("job %s: %s", job.id, outcome)
            else:
                self._lost(job, "stopped")
        except JobLost as exc:
            self._lost(job, str(exc))
        except JobError as exc:
            self._fail(job, str(exc))
        except DatasetError as exc:
            self._fail(job, f"dataset: {exc}")
        except DatasetStoreError as exc:
            self._fail(job, exc.message)
        except Exception as exc:
            log.exception("job %s: failed", job.id)
            self._fail(job, f"{type(exc).__name__}: {exc}")

    def _fail(self, job: Job, message: str) -> None:
        if self.jobs.mark_failed(job.id, message, worker_id=self.worker_id):
            log.error("job %s: failed: %s", job.id, message)
        else:
            self._lost(job, f"failed ({message})")

    def _lost(self, job: Job, outcome: str) -> None:
        current = self.jobs.get(job.id)
        status = "gone" if current is None else f"{current.status.value}, worker {current.worker_id}"
        log.warning(
            "job %s: %s, but it is no longer running on this worker (now %s); nothing recorded",
            job.id,
            outcome,
            status,
        )

    def _should_stop(self, job_id: str) -> Callable[[], bool]:
        last_check = 0.0
        stop = False

        def should_stop() -> bool:
            """True once the job is cancelled or no longer running on this worker, or the worker stops."""
            nonlocal last_check, stop
            now = time.monotonic()
            if not stop and now - last_check >= _CANCEL_CHECK_EVERY_S:
                job = self.jobs.get(job_id)
                # Another worker fails a job whose heartbeats stopped: training on would promote a failed job.
                stop = job is None or job.cancel_requested or not job.runs_on(self.worker_id)
                last_check = now
            return stop or self.stopping

        return should_stop

    def _train_and_store(self, job: Job) -> None:
        from model.checkpoint import save_checkpoint
        from model.features import FeatureCache
        from model.training import TrainingCancelled, train

        params = TrainParams.model_validate(job.params)
        train_set = self.datasets.load(job.dataset, skip_invalid=job.skip_invalid)
        # Counted before any split: a held-out part of the training set starts with skipped == 0.
        skipped_rows = {"dataset": train_set.skipped, "validation": 0}
        fraction = job.validation if isinstance(job.validation, float) else None
        model_config, train_config = params.configs(
            train_set.labels, device=self.settings.device, val_fraction=fraction
        )
        if isinstance(job.validation, str):
            try:
                val_set = self.datasets.load(
                    job.validation, labels=train_set.labels, skip_invalid=job.skip_invalid
                )
            except DatasetError as exc:
                raise JobError(f"validation: {exc}") from exc
            skipped_rows["validation"] = val_set.skipped
        else:
            train_set, val_set = split_dataset(train_set, train_config.val_fraction, train_config.seed)
        log.info(
            "job %s: %d training and %d validation samples, labels %s, invalid rows skipped %s",
            job.id,
            len(train_set),
            len(val_set),
            ", ".join(train_set.labels),
            skipped_rows,
        )

        writer = _ProgressWriter(self.jobs, job.id)
        should_stop = self._should_stop(job.id)
        if train_config.nproc > 1:
            result = self._train_in_processes(job, model_config, train_config, train_set, writer, should_stop)
        else:
            result = train(
                model_config,
                train_config,
                train_set,
                val_set,
                cache=FeatureCache(self.cache_dir),
                on_progress=writer,
                should_stop=should_stop,
            )
        if self.jobs.cancel_requested(job.id):  # cancelled during the final evaluation: discard the model
            raise TrainingCancelled()

        metric = train_config.metric
        value = result.metrics["fusion"][metric]
        path = self.models.new_version_path()
        try:
            save_checkpoint(
                path,
                result.model,
                metrics=result.metrics,
                dataset_fingerprint=train_set.fingerprint,
                train_config=train_config,
                extra={"job_id": job.id, "dataset": job.dataset, "validation": job.validation},
            )
        except Exception as exc:
            raise JobError(f"could not save the model: {exc}") from exc
        # A job another worker declared dead reads "failed": its model must not go live. The saved version
        # stays in the store, inactive (an operator may still activate it by hand).
        current = self.jobs.get(job.id)
        if current is None or not current.runs_on(self.worker_id):
            raise JobLost(f"trained; version {path.name} saved but not activated")
        promotion = self._promote(job, path.name, metric, value)
        metrics = {
            **result.metrics,
            "labels": list(result.model.labels),
            "best_epoch": result.best_epoch,
            "metric": metric,
            "promotion": promotion,
            "skipped_rows": skipped_rows,
        }
        done = {
            "stage": "done",
            "epoch": result.best_epoch,
            "epochs": train_config.epochs,
            "step": 0,
            "steps": 0,
            "loss": None,
            "eta_s": 0.0,
            "fraction": 1.0,
        }
        recorded = self.jobs.mark_succeeded(
            job.id,
            worker_id=self.worker_id,
            metrics=metrics,
            history=result.history,
            model_version=path.name,
            promoted=promotion["promoted"],
            progress=done,
        )
        if not recorded:
            raise JobLost(f"trained and saved version {path.name} ({promotion['reason']})")
        log.info(
            "job %s: succeeded, version %s, %s %.4f; %s",
            job.id,
            path.name,
            metric,
            value,
            promotion["reason"],
        )

    def _train_in_processes(
        self,
        job: Job,
        model_config: ModelConfig,
        train_config: TrainConfig,
        train_set: Dataset,
        on_progress: Callable[[Progress], None],
        should_stop: Callable[[], bool],
    ) -> TrainResult:
        """Train in `train_config.nproc` processes under torchrun; returns the model they wrote."""
        from model.checkpoint import CheckpointError, load_checkpoint
        from model.distributed import check_nproc, torchrun_command
        from model.training import TrainResult

        try:
            check_nproc(train_config.nproc, train_config.device)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Named after the job, so that `_remove_stale_work_dirs` can tell whose it is.
        with tempfile.TemporaryDirectory(prefix=f"{job.id}-", dir=self.work_dir) as tmp:
            work = Path(tmp)
            config = work / "config.json"
            recipe = {"model_config": model_config.to_dict(), "train_config": train_config.to_dict()}
            config.write_text(json.dumps(recipe), encoding="utf-8")
            args = self._train_command_args(job, train_config, config, work / "model")
            _run_training_processes(
                torchrun_command(train_config.nproc, args), job.id, on_progress, should_stop
            )
            try:
                model, meta = load_checkpoint(work / "model")
            except CheckpointError as exc:
                raise JobError(f"the training processes left no usable model: {exc}") from exc
        # The processes loaded the datasets again; a different fingerprint means they changed meanwhile.
        if meta["dataset_fingerprint"] != train_set.fingerprint:
            raise JobError("the training data changed while the job ran; run the job again")
        extra = meta["extra"]
        return TrainResult(model, extra["history"], meta["metrics"], extra["best_epoch"])

    def _remove_stale_work_dirs(self) -> None:
        """Delete the torchrun work folders of jobs not running (left behind by a worker that was killed)."""
        if not self.work_dir.is_dir():
            return
        # Listed before asking the store: a folder seen here was made after its job was claimed, so a job
        # still running (on any worker sharing this data directory) is among the running ones.
        folders = list(self.work_dir.iterdir())
        running = {job.id for job in self.jobs.running_jobs()}
        for folder in folders:
            job_id = folder.name.rpartition("-")[0]
            if job_id not in running:
                log.info("removing %s, left behind by job %s", folder, job_id or "?")
                shutil.rmtree(folder, ignore_errors=True)

    def _train_command_args(self, job: Job, train_config: TrainConfig, config: Path, out: Path) -> list[str]:
        """`python -m model train` arguments for this job's datasets, validation and recipe file."""
        path, split = self.datasets.resolve(job.dataset)
        args = ["train", str(path.resolve()), "--config", str(config), "--out", str(out)]
        args += ["--cache-dir", str(self.cache_dir.resolve()), "--progress", "json"]
        if split is not None:
            args += ["--split", split]
        if isinstance(job.validation, str):
            val_path, val_split = self.datasets.resolve(job.validation)
            args += ["--val", str(val_path.resolve())]
            if val_split is not None:
                args += ["--val-split", val_split]
        else:
            args += ["--val-fraction", repr(train_config.val_fraction)]
        if job.skip_invalid:
            args.append("--skip-invalid")
        return args

    def _promote(self, job: Job, version: str, metric: str, value: float) -> dict[str, Any]:
        """Activate the new version per the job's policy; returns the decision and why."""
        decision: dict[str, Any] = {"policy": job.promote, "metric": metric, "value": value}
        active = None
        try:
            active = self.models.active_version()
        except ModelStoreError as exc:
            log.warning("job %s: active pointer unreadable (%s)", job.id, exc)
        decision["previous_version"] = active
        if job.promote == "never":
            return {**decision, "promoted": False, "reason": "not promoted (promote is never)"}
        has_active = active is not None and self.models.exists(active)
        if job.promote == "if_better" and has_active:
            assert active is not None
            recorded = self.models.get(active).metrics
            # Checkpoints from jobs and the CLI keep per-mode reports; hand-made ones may be flat.
            fusion = recorded.get("fusion")
            previous = fusion.get(metric) if isinstance(fusion, dict) else recorded.get(metric)
            decision["previous_value"] = previous
            if not isinstance(previous, int | float):
                reason = f"not promoted: active version {active} has no recorded {metric} to compare with"
                return {**decision, "promoted": False, "reason": reason}
            if value <= previous:
                reason = f"not promoted: {metric} {value:.4f} does not beat active {active} ({previous:.4f})"
                return {**decision, "promoted": False, "reason": reason}
        try:
            self.models.activate(version)
        except ModelStoreError as exc:
            raise JobError(f"version {version} was saved but cannot be activated: {exc}") from exc
        if job.promote == "always":
            reason = "promoted (promote is always)"
        elif not has_active:
            reason = "promoted (no active model)"
        else:
            reason = f"promoted ({metric} beats active {active})"
        return {**decision, "promoted": True, "reason": reason}


def _run_training_processes(
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
                process.wait(timeout=_CANCEL_CHECK_EVERY_S)
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
    from model.training import Progress

    for raw in stream:
        line = raw.rstrip()
        # Whatever a line holds (or a store hiccup), the reading goes on: the processes would block on a
        # full pipe.
        try:
            if line.startswith('{"progress"'):
                on_progress(Progress(**json.loads(line)["progress"]))
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


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fusion-worker", description="Run queued training jobs.")
    parser.add_argument("--worker-token", help="token in this worker's id (set by the API's supervisor)")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started this one exits"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m service.worker` / `fusion-worker`; settings come from FUSION_* variables."""
    args = _parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    token = args.worker_token or uuid.uuid4().hex[:8]
    try:
        worker = Worker(
            settings,
            worker_id=make_worker_id(os.getpid(), token),
            parent_pid=os.getppid() if args.exit_with_parent else None,
        )
    except JobDatabaseError as exc:  # e.g. a bad FUSION_JOB_DB_URL: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Training sizes nothing itself; this process may use every CPU it is allowed (its affinity).
    threads = configure_cpu_threads()
    log.info("worker %s: %d torch CPU threads", worker.worker_id, threads)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("worker %s: %s received, stopping", worker.worker_id, signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

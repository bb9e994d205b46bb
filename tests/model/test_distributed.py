"""Tests for model.distributed: batch sharding, and `train --nproc 2` (torchrun, gloo) against one process.

Both runs draw the same global batches from the same seed and start from the same weights, so without
batch norm and dropout two processes must compute what one does, up to float summation order (measured:
losses agree to 6e-8 relative). With the cnn image encoder each process normalises its 8-row shard with
its own batch statistics instead of the 16-row batch's, so the runs drift apart a little: on the
50-sample dev set both reach 1.0 fusion accuracy; the test allows 0.05 (two samples).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from fusion_testkit.factories import tiny_model_config
from fusion_testkit.processes import free_port
from model.checkpoint import read_checkpoint_meta
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset
from model.device import available_cpus
from model.distributed import (
    PROCESS_GROUP_TIMEOUT,
    Ranks,
    check_nproc,
    parent_death_signal,
    process_group,
    shard,
)
from model.training import TrainResult, train

ACCURACY_TOLERANCE = 0.05
LOSS_RELATIVE_TOLERANCE = 1e-5


@dataclasses.dataclass
class TwoProcessRun:
    """What `python -m model train --nproc 2` left behind."""

    out: Path
    meta: dict[str, Any]
    progress: list[dict[str, Any]]


def _train_in_two_processes(
    work: Path, data: Path, model_config: ModelConfig, train_config: TrainConfig
) -> TwoProcessRun:
    config = work / "config.json"
    recipe = {"model_config": model_config.to_dict(), "train_config": train_config.to_dict()}
    config.write_text(json.dumps(recipe))
    out = work / "checkpoints" / "model"
    command = [
        sys.executable, "-m", "model", "train", str(data), "--val", str(data), "--val-split", "dev",
        "--config", str(config), "--out", str(out), "--device", "cpu", "--progress", "json", "--nproc", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"progress"')]
    return TwoProcessRun(out, read_checkpoint_meta(out), [json.loads(line)["progress"] for line in lines])


@dataclasses.dataclass
class Runs:
    """The same training in one process (in-process `train`) and in two (`train --nproc 2`)."""

    one: TrainResult
    two: TwoProcessRun


@pytest.fixture(scope="module")
def run_both(
    tmp_path_factory: pytest.TempPathFactory, demo_root: Path, demo_train: Dataset, demo_dev: Dataset
) -> Callable[[ModelConfig, TrainConfig], Runs]:
    def run(model_config: ModelConfig, train_config: TrainConfig) -> Runs:
        work = tmp_path_factory.mktemp("two")
        return Runs(
            train(model_config, train_config, demo_train, demo_dev),
            _train_in_two_processes(work, demo_root, model_config, train_config),
        )

    return run


@pytest.fixture(scope="module")
def text_only(run_both: Callable[[ModelConfig, TrainConfig], Runs], xor_train_config: TrainConfig) -> Runs:
    """bow only: no batch norm and, with dropout 0, nothing random in the forward pass."""
    config = tiny_model_config(
        labels=(), image_encoder="none", fusion="concat", hidden_dim=32, embed_dim=32, modality_dropout=0.0
    )
    return run_both(config, xor_train_config)


@pytest.fixture(scope="module")
def fusion(
    run_both: Callable[[ModelConfig, TrainConfig], Runs],
    xor_model_config: ModelConfig,
    xor_train_config: TrainConfig,
) -> Runs:
    """cnn + bow: the cnn's batch norm sees 8-row shards in the two-process run."""
    return run_both(xor_model_config, xor_train_config)


def test_shards_of_a_batch_cover_it_once() -> None:
    batch = [7, 3, 11, 0, 5]

    shards = [shard(batch, Ranks(rank, 2)) for rank in range(2)]

    assert sorted(shards[0] + shards[1]) == sorted(batch)
    assert [len(rows) for rows in shards] == [3, 2]


def test_a_single_process_shard_is_the_whole_batch() -> None:
    assert shard([4, 2, 9], Ranks()) == [4, 2, 9]


@pytest.mark.slow  # torchrun and two training processes start (5-20 s on a busy 2-core machine)
def test_two_processes_compute_what_one_does(text_only: Runs) -> None:
    one, two = text_only.one.history, text_only.two.meta["extra"]["history"]

    assert len(two) == len(one)
    for epoch_one, epoch_two in zip(one, two, strict=True):
        assert epoch_two["loss"] == pytest.approx(epoch_one["loss"], rel=LOSS_RELATIVE_TOLERANCE)
        assert epoch_two["val"]["accuracy"] == epoch_one["val"]["accuracy"]


@pytest.mark.slow
def test_two_processes_with_batch_norm_match_one_within_tolerance(fusion: Runs) -> None:
    accuracy_one = fusion.one.metrics["fusion"]["accuracy"]
    accuracy_two = fusion.two.meta["metrics"]["fusion"]["accuracy"]

    assert accuracy_two >= 0.9  # learned the demo task, which neither modality alone fully can
    assert abs(accuracy_two - accuracy_one) <= ACCURACY_TOLERANCE


@pytest.mark.slow
def test_rank_zero_alone_writes_the_checkpoint(fusion: Runs) -> None:
    assert [p.name for p in fusion.two.out.parent.iterdir()] == ["model"]
    assert fusion.two.meta["extra"]["world_size"] == 2
    assert fusion.two.meta["train_config"]["nproc"] == 2


@pytest.mark.slow
def test_rank_zero_alone_reports_progress(fusion: Runs, xor_train_config: TrainConfig) -> None:
    evaluated = [p["epoch"] for p in fusion.two.progress if p["stage"] == "evaluating"]

    assert evaluated == list(range(1, xor_train_config.epochs + 1))


def test_nproc_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^nproc: "):
        TrainConfig(nproc=0)


def test_more_processes_than_cpus_are_refused() -> None:
    with pytest.raises(ValueError, match=rf"^nproc: .* only {available_cpus()} CPUs$"):
        check_nproc(available_cpus() + 1, "cpu")


def test_one_process_per_cpu_is_allowed() -> None:
    check_nproc(available_cpus(), "cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a parent-death signal is Linux only")
def test_a_process_given_a_parent_death_signal_ends_with_its_parent() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        started.append(subprocess.Popen(["sleep", "60"], preexec_fn=parent_death_signal(signal.SIGTERM)))

    # The kernel signals when the thread that started the process ends: a thread stands in for a parent.
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()

    assert started[0].wait(timeout=10) == -signal.SIGTERM


def _rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What torchrun sets for a process of a one-node group (without its agent)."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def test_the_process_group_waits_long_enough_for_a_large_feature_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in _rank_environment(0, 1, free_port()).items():
        monkeypatch.setenv(key, value)

    with process_group("cpu"):
        backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
        timeout = backend.options._timeout

    assert timeout == PROCESS_GROUP_TIMEOUT


# Local rank 0 fails while it fills the feature cache; rank 1 waits for it at the barrier.
_FAILING_ENCODER = """
from model.distributed import local_main_first, process_group

with process_group("cpu") as ranks, local_main_first(ranks):
    if ranks.rank == 0:
        raise RuntimeError("encoding failed")
print("rank", ranks.rank, "went on")
"""


@pytest.mark.slow  # two interpreters import torch and join a gloo group (5-10 s on a busy 2-core machine)
def test_a_failure_on_local_rank_zero_releases_the_ranks_waiting_for_it() -> None:
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _FAILING_ENCODER],
            env={**os.environ, **_rank_environment(rank, 2, port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        (_, err0), (out1, _) = (process.communicate(timeout=120) for process in processes)
    finally:
        for process in processes:
            process.kill()

    assert processes[0].returncode != 0 and "RuntimeError: encoding failed" in err0
    assert processes[1].returncode == 0 and out1 == "rank 1 went on\n"

"""Data-parallel training across processes started by torchrun: ranks, batch sharding and collectives.

Every rank of a run draws the same global batches (one seeded generator) and computes on its shard of
each; DistributedDataParallel averages the gradients, so the update equals a one-process step on the
whole batch (batch-norm statistics and dropout draws aside). Evaluation is sharded too and the
predictions are gathered, so every rank computes the same metrics and takes the same early-stopping
decision. Outside a process group every function here is a no-op for a single process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from model.device import available_cpus, resolve_device

# Set by torchrun (and by `torch.distributed.run`) in every process it starts.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# How long a collective may wait for the slowest rank. The longest wait is by design: the other ranks
# of a node sit at a barrier while its local rank 0 encodes the whole dataset into the feature cache,
# which on a large dataset takes far longer than torch's defaults (30 min gloo, 10 min nccl).
PROCESS_GROUP_TIMEOUT = timedelta(hours=6)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group; the defaults describe a single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that reports progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def parent_death_signal(sig: signal.Signals) -> Callable[[], None]:
    """A function that makes the process calling it receive `sig` when its parent exits (Linux; else a no-op).

    Safe as `subprocess.Popen(preexec_fn=...)`: libc is loaded here, before the fork. The kernel sends
    the signal when the *thread* that started the process ends, so start it from a thread that outlives it.
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_parent_death_signal() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"prctl(PR_SET_PDEATHSIG): {os.strerror(number)}")

    return set_parent_death_signal


def launched_by_torchrun() -> bool:
    """Whether this process is one of the workers that torchrun started."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def current_ranks() -> Ranks:
    """The ranks of the initialised process group, or `Ranks()` when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    rank, world = dist.get_rank(), dist.get_world_size()
    return Ranks(
        rank,
        world,
        int(os.environ.get("LOCAL_RANK", rank)),
        int(os.environ.get("LOCAL_WORLD_SIZE", world)),
    )


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Ranks]:
    """Join the process group torchrun describes in the environment (nccl on CUDA, gloo on CPU) for the block.

    On CUDA each process uses the GPU of its local rank.
    """
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # Started by torchrun's agent, in a session of its own: if the agent is killed (and cannot stop
        # this process itself), this process must not train on alone.
        parent_death_signal(signal.SIGKILL)()
    target = resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if target.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            local = os.environ.get("LOCAL_WORLD_SIZE", "?")
            raise ValueError(f"nproc: {local} processes on this node but only {count} CUDA devices")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    try:
        yield current_ranks()
        # Every rank done (rank 0's checkpoint save included) before any tears its connections down: a rank
        # that destroyed its gloo pairs while another still wrote was seen to abort at exit (SIGABRT,
        # "terminate called without an active exception"). A rank that failed has left the group: the
        # barrier then errors at once, and the ranks still here go on to their own teardown (torchrun
        # reports the failed one).
        with contextlib.suppress(RuntimeError):
            dist.barrier()
    finally:
        dist.destroy_process_group()


def check_nproc(nproc: int, device: str = "auto") -> None:
    """ValueError("nproc: ...") when `nproc` processes exceed this machine's GPUs (CUDA) or CPUs (CPU)."""
    if resolve_device(device).type == "cuda":
        count, unit = torch.cuda.device_count(), "CUDA devices"
    else:
        count, unit = available_cpus(), "CPUs"
    if nproc > count:
        raise ValueError(f"nproc: {nproc} training processes but this machine has only {count} {unit}")


def cpu_threads_per_process(ranks: Ranks) -> int:
    """An equal share of this process's CPUs for each process on the node (at least one)."""
    return max(1, available_cpus() // ranks.local_world_size)


def torchrun_command(nproc: int, module_args: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m model ARGS` with this interpreter.

    `--standalone` runs the rendezvous on a free local port, so concurrent runs never collide.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "model",
        *module_args,
    ]


def shard(batch: Sequence[int], ranks: Ranks) -> list[int]:
    """This rank's rows of a global batch: every `world_size`-th row, starting at its rank."""
    return list(batch[ranks.rank :: ranks.world_size])


def all_reduce(values: torch.Tensor, ranks: Ranks, op: str = "sum") -> torch.Tensor:
    """`values` combined over all ranks in place (`op` sum or max); unchanged in a single process."""
    if ranks.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return values


def broadcast_buffers(module: nn.Module, ranks: Ranks) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every rank.

    DistributedDataParallel broadcasts them before each forward pass, so after the last step of an
    epoch each rank holds the statistics of its own shard; evaluation needs one model everywhere.
    """
    if ranks.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


@contextlib.contextmanager
def local_main_first(ranks: Ranks) -> Iterator[None]:
    """Run the block on each node's local rank 0 first, then on the node's other ranks.

    Used around feature encoding: the first rank fills the shared cache, the others then read it.
    When the block fails on local rank 0, it still reaches the barrier, so that the others do not wait
    there for `PROCESS_GROUP_TIMEOUT` (they go on, and torchrun stops them once rank 0 has exited).
    """
    if not ranks.distributed:
        yield
        return
    if ranks.local_rank != 0:
        dist.barrier()
        yield
        return
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the block's error is the one to report
            dist.barrier()
        raise
    dist.barrier()


__all__ = [
    "PROCESS_GROUP_TIMEOUT",
    "Ranks",
    "all_reduce",
    "broadcast_buffers",
    "check_nproc",
    "cpu_threads_per_process",
    "current_ranks",
    "launched_by_torchrun",
    "local_main_first",
    "parent_death_signal",
    "process_group",
    "shard",
    "torchrun_command",
]

"""Data-parallel training under `torchrun`: process group, device, sharding and reductions.

`torchrun` starts one process per rank and sets `RANK`, `LOCAL_RANK`,
`WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` in each one's environment.
`init_distributed` reads them and joins the process group: NCCL when the
rank trains on a GPU, gloo on the CPU. Without those variables it returns a
single-process context and creates no process group, so a plain
`liquid-driver-train` runs as it always did.

Every rank indexes the same episodes, computes the same train/validation
split and seeds the same random generators for the window grid and order.
Two ways of sharding then give each rank its windows:

* by episode (the default): `assign_episodes` gives each rank whole training
  episodes, balanced by window count. `EpisodeShards.shard` keeps the rank's
  own windows of the shared order and pads them, by repeating them, to the
  largest rank's window count, so every rank runs the same number of steps;
* by window: `DistributedContext.shard` gives each rank every
  `world_size`-th window of the shared order, so the union of one step's
  per-rank batches is one contiguous global batch.

`DistributedDataParallel` averages the gradients, and
`all_reduce_sum` and `any` make every rank reach the same metrics and the
same stop decisions, so that no rank waits in a collective that the others
have left.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DEVICES",
    "SHARD_MODES",
    "DistributedContext",
    "EpisodeShards",
    "SetupError",
    "assign_episodes",
    "check_precision",
    "init_distributed",
    "parameter_digest",
    "resolve_device",
    "shutdown_distributed",
    "single_process_context",
]

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# Ways of dividing the training windows among the ranks (see the module docstring).
SHARD_MODES = ("episode", "window")
# Environment variables that torchrun sets in every process it starts.
_TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
# Collectives that wait longer than this fail instead of hanging. The limit is long
# because the other ranks wait while local rank 0 fills the frame cache.
_COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


class SetupError(RuntimeError):
    """Another rank failed while preparing the run; that rank's log has the reason."""


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and device of this process; one rank of world size 1 without torchrun."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the rank that logs progress and writes the run folder."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether more than one rank trains; a 1-process torchrun trains like a plain run."""
        return self.world_size > 1

    def shard(self, order: np.ndarray) -> np.ndarray:
        """Return this rank's share of a window order that every rank computed identically.

        As in `torch.utils.data.DistributedSampler`, the order is padded by
        repeating its start until its length divides by the world size, so every
        rank gets the same number of windows and runs the same number of steps.
        Rank r takes positions r, r + world_size, ..., so batch k of every rank
        together is the contiguous slice k of the order that one process with a
        batch `world_size` times larger would train on.
        """
        if not self.is_distributed or len(order) == 0:
            return order
        padded_length = -(-len(order) // self.world_size) * self.world_size
        padded = np.resize(order, padded_length)  # repeats the order from its start
        return padded[self.rank :: self.world_size]

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Return the element-wise sums of `values` over all ranks, in float64."""
        if not self.is_distributed:
            return [float(value) for value in values]
        tensor = torch.tensor([float(value) for value in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """Return whether `flag` is true on at least one rank; every rank gets the same result."""
        if not self.is_distributed:
            return bool(flag)
        tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def raise_if_any_failed(self, error: BaseException | None) -> None:
        """Raise `error` on the rank that caught it and `SetupError` on the others.

        Every rank calls this at the same point, so it also serves as a barrier.
        """
        failed = self.any(error is not None)
        if error is not None:
            raise error
        if failed:
            raise SetupError(
                f"rank {self.rank}: another rank failed while preparing the run; see the errors "
                "logged by the other ranks."
            )


def assign_episodes(window_counts: Sequence[int], world_size: int) -> list[list[int]]:
    """Assign episodes to ranks so that each rank gets about the same number of windows.

    Episodes are taken in order of descending window count, ties by lower
    episode index, and each goes to the rank with the fewest windows so far,
    ties by lower rank. The result depends only on the counts, so every rank
    computes the same assignment. With fewer episodes than ranks, the last
    ranks get no episode; the caller decides whether that is an error.

    Args:
        window_counts: Windows of each episode, indexed by episode.
        world_size: Number of ranks.

    Returns:
        Per rank, its episode indices in ascending order.

    Raises:
        ValueError: `world_size` is below 1 or a count is negative.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"invalid world_size {world_size!r}; expected an int >= 1.")
    counts = [int(count) for count in window_counts]
    if any(count < 0 for count in counts):
        raise ValueError(f"invalid window counts {counts}; expected counts >= 0.")
    loads = [0] * world_size
    assigned: list[list[int]] = [[] for _ in range(world_size)]
    for episode in sorted(range(len(counts)), key=lambda index: (-counts[index], index)):
        rank = min(range(world_size), key=lambda candidate: (loads[candidate], candidate))
        assigned[rank].append(episode)
        loads[rank] += counts[episode]
    return [sorted(episodes) for episodes in assigned]


@dataclass(frozen=True)
class EpisodeShards:
    """Training episodes of each rank, as `assign_episodes` returns them."""

    ranks: tuple[tuple[int, ...], ...]  # episode indices per rank

    def shard(self, order: np.ndarray, window_episodes: np.ndarray, rank: int) -> np.ndarray:
        """Return `rank`'s windows of a shared window order, padded to the largest rank's count.

        The rank keeps the windows of its own episodes in the order in which
        they appear in `order`. As in `torch.utils.data.DistributedSampler`,
        the shorter shards are padded by repeating their start, so every rank
        trains on the same number of windows and runs the same number of steps.
        The padding repeats only the rank's own windows, which come in the
        random order of the shared permutation.

        Args:
            order: Window indices in the order that every rank drew.
            window_episodes: Episode index of every window, indexed by window.
            rank: The rank whose share to return.

        Raises:
            ValueError: The rank has no window while another rank has some.
        """
        owner_of = {episode: owner for owner, episodes in enumerate(self.ranks) for episode in episodes}
        # Rank of every window; -1 for a window of an episode that no rank owns.
        window_owners = np.fromiter(
            (owner_of.get(int(episode), -1) for episode in window_episodes), dtype=np.int64, count=len(window_episodes)
        )
        counts = np.bincount(window_owners[window_owners >= 0], minlength=len(self.ranks))
        own = order[window_owners[order] == rank]
        target = int(counts.max(initial=0))
        if len(own) == 0 and target > 0:
            raise ValueError(
                f"rank {rank} has no training window while another rank has {target}; give every "
                "rank at least one episode with a window."
            )
        return np.resize(own, target)  # repeats the rank's windows from their start


def single_process_context(device: str = "auto") -> DistributedContext:
    """Return the context of a plain run: rank 0 of 1 on the selected device."""
    return DistributedContext(device=resolve_device(device, local_rank=None))


def resolve_device(choice: str, local_rank: int | None) -> torch.device:
    """Return the torch device for `--device` (auto, cpu or cuda) and this rank.

    Under torchrun each rank uses `cuda:LOCAL_RANK`; a plain run uses the current GPU.

    Raises:
        ValueError: `choice` is unknown, CUDA is requested but unavailable, or
            the local rank has no GPU of its own.
    """
    if choice not in DEVICES:
        raise ValueError(f"invalid device {choice!r}; expected one of {', '.join(DEVICES)}.")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but torch.cuda.is_available() is False; install a CUDA "
            "build of PyTorch or pass --device cpu."
        )
    if local_rank is None:
        return torch.device("cuda", torch.cuda.current_device())
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
            "start at most that many processes per node with torchrun --nproc_per_node."
        )
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the torchrun process group if this process was started by torchrun.

    The backend follows the device: NCCL for CUDA, gloo for the CPU.

    Raises:
        ValueError: A torchrun variable is not an int, or the device is unavailable.
    """
    if not all(name in os.environ for name in _TORCHRUN_VARIABLES):
        return single_process_context(device)
    try:
        rank, local_rank, world_size = (int(os.environ[name]) for name in _TORCHRUN_VARIABLES)
    except ValueError:
        values = {name: os.environ[name] for name in _TORCHRUN_VARIABLES}
        raise ValueError(f"invalid torchrun environment {values}; expected ints. Start with torchrun.") from None
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
        backend = "nccl"
    else:
        backend = "gloo"
    # NOTE: only the gloo path has run in this project's tests. The NCCL path follows
    # the PyTorch 2.x DDP documentation but has not run on a GPU.
    dist.init_process_group(backend=backend, timeout=_COLLECTIVE_TIMEOUT)
    context = DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=resolved)
    if context.is_main:
        logger.info("Joined the process group: %d ranks, backend %s, device %s", world_size, backend, resolved)
    return context


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ValueError when `precision` (fp32 or bf16) cannot run on `device`.

    bf16 runs on every CPU through torch.autocast, emulated where the CPU lacks
    bfloat16 instructions, and on GPUs that `torch.cuda.is_bf16_supported` accepts.
    """
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision bf16 is not supported on {torch.cuda.get_device_name(device)}; pass --precision fp32."
        )


def shutdown_distributed() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def parameter_digest(module: torch.nn.Module) -> str:
    """Return the SHA-256 hex digest of a module's state dict: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{values.dtype}:{tuple(values.shape)}".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()

"""Multi-process training under torchrun: DistributedDataParallel plumbing kept out of the engine.

torchrun sets WORLD_SIZE/RANK/LOCAL_RANK. With WORLD_SIZE > 1 `segcli train` joins a process group
(NCCL on CUDA, gloo on CPU), each process on its own `cuda:LOCAL_RANK`. `--batch-size` is the
*global* batch (as in Ultralytics): each of N processes takes batch/N images per step, and the N
parts of a step are exactly the batch one process would take (see SeededSampler). A plain process
gets a Context with world 1 whose helpers are no-ops, so the engine has one code path.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from segcli.data.dataset import SizeGroupedBatches
from segcli.device import select_device
from segcli.errors import UserError
from segcli.ranks import world_from_env

M = TypeVar("M", bound=Optional[nn.Module])


@dataclass
class Context:
    rank: int = 0
    local_rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Only the main process creates the run folder, writes files and reports progress."""
        return self.rank == 0

    def local_batch(self, global_batch: int) -> int:
        if global_batch % self.world:
            raise UserError(f"--batch-size {global_batch} is the global batch; it must be a multiple of the "
                            f"{self.world} processes (e.g. {max(1, global_batch // self.world) * self.world})")
        return global_batch // self.world

    def wrap(self, module: M) -> M:
        """DDP around a module (None and single-process pass through).

        broadcast_buffers=False: BatchNorm running statistics stay per process (each an exact EMA of
        its own batches; average_buffers() merges them before validation), and the discriminator's
        spectral-norm vectors need no broadcast: every process runs the same power iteration on the
        same weights. The generator step calls the bare discriminator (train.gan.generator_step), so no
        parameter goes unused in a DDP pass and find_unused_parameters (an extra graph walk per step)
        is not needed.
        """
        if module is None or not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        # torch >= 2.14 renames broadcast_buffers; both still sync once at construction
        key = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
        return ddp(module, device_ids=ids, **{key: False})

    @property
    def batch_sum(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """Autograd-aware sum over processes (None in a single process), for global-batch losses."""
        return sum_over_processes if self.enabled else None

    def share(self, value: Any) -> Any:
        """Rank 0's value (a run folder path, a decision) on every process."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, x: float) -> float:
        """Rank 0's number, e.g. the elapsed time, so a --time budget stops every process together."""
        if not self.enabled:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def sum_array(self, a: np.ndarray) -> np.ndarray:
        """Element-wise sum over processes (validation confusion matrices)."""
        if not self.enabled:
            return a
        t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        dist.all_reduce(t)
        return t.cpu().numpy()

    def mean_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Per-process loss sums averaged over processes (what metrics.csv reports)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.stack([torch.as_tensor(values[k], dtype=torch.float32, device=self.device) for k in keys])
        dist.all_reduce(t)
        return {k: v for k, v in zip(keys, (t / self.world).tolist())}

    @torch.no_grad()
    def average_buffers(self, module: nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running stats) so all processes validate and
        save one model. The running mean is then exactly the EMA of global-batch means."""
        if not self.enabled:
            return
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(self.world)


@contextmanager
def session(device_spec: str) -> Iterator[Context]:
    """Join the torchrun process group for the duration of a training run (no-op without torchrun)."""
    rank, local, world = world_from_env()
    device = select_device(device_spec)
    if world <= 1:
        yield Context(device=device)
        return
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local}: only {torch.cuda.device_count()} CUDA device(s) on this node; "
                            "use --nproc_per_node <= the GPU count")
        device = torch.device("cuda", local)  # one process per GPU
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UserError(f"--device {device_spec}: distributed training needs CUDA (nccl) or the CPU (gloo)")
    owner = not dist.is_initialized()
    if owner:
        kw = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **kw)
    try:
        yield Context(rank, local, world, device)
    finally:
        if owner and dist.is_initialized():
            dist.destroy_process_group()


class SeededSampler(DistributedSampler):
    """A DistributedSampler whose items are (index, augmentation seed).

    Process r of N takes positions r, r+N, r+2N, ... of one seeded permutation per epoch, so step s
    of all processes together covers positions [s*B, (s+1)*B) with B = N * per-process batch: the
    same images as step s of one process with batch B. The per-sample seed (seed, epoch, index)
    makes each image's augmentation independent of which process or loader worker draws it.
    Used for single-process runs too (N = 1), so one and N processes train on the same batches.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        base = (self.seed * 1_000_003 + self.epoch) * 1_000_003
        for i in super().__iter__():
            yield i, (base + i) % 2**63


def train_sampler(dataset: Dataset, seed: int, ctx: Context) -> SeededSampler:
    return SeededSampler(dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed)


def shard_batches(sampler: SizeGroupedBatches, ctx: Context) -> SizeGroupedBatches:
    """Each process validates every N-th batch; the confusion matrices then add up exactly."""
    sampler.batches = sampler.batches[ctx.rank :: ctx.world]
    return sampler


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM) whose gradient is the all_reduce(SUM) of the gradients.

    With it a loss built from global sums is the same on every process, and the gradient each
    process gets for its own inputs is that of the global loss (times N, which DDP's gradient
    averaging divides out again).
    """

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_processes(t: torch.Tensor) -> torch.Tensor:
    return _SumOverProcesses.apply(t)


class _CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with statistics over all processes, for gloo/CPU (torch's SyncBatchNorm is GPU-only).

    Mean and variance are all-reduced with autograd-aware collectives, so gradients flow across
    processes as they would through one big batch. Same parameters and buffers as BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = sum_over_processes
        x = x.float()
        shape = (1, -1, 1, 1)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64)
        dist.all_reduce(count)
        n = float(count.item())
        mean = all_reduce(x.sum((0, 2, 3))) / n
        xc = x - mean.view(shape)
        var = all_reduce((xc * xc).sum((0, 2, 3))) / n  # two passes: as exact as F.batch_norm
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1.0), m)
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert_sync_bn(module: nn.Module, ctx: Context) -> nn.Module:
    """--sync-bn: BatchNorm statistics over the global batch (a no-op in a single process)."""
    if not ctx.enabled:
        return module
    if ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = _CpuSyncBatchNorm  # same state, only forward() differs
    return module

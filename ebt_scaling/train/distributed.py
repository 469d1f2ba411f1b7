"""Data-parallel training of one point across processes (torch.distributed).

An adapter around the one training loop, not a second loop: `train()` asks `from_env()`
whether it runs as one of several ranks (torchrun, Ray Train or Slurm tasks set RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and the loop then

  * trains on rows share(n) of every global batch of n (rank r: r*n//W .. (r+1)*n//W);
  * sums the ranks' gradients with one all_reduce per step (each rank's loss is
    already its share of the global mean, so the sum is the global gradient), before
    clipping and the optimiser step, which every rank then takes identically;
  * sums the logged loss and metrics the same way;
  * lets rank 0 alone write rows and checkpoints.

Why not the DistributedDataParallel wrapper: its gradient hooks are armed by
`forward()`, but a point trains through `model.loss` (the EBT thinks with
torch.autograd.grad and a double backward, which DDP does not support). One flat
all_reduce after the micro-batches is what DDP's no_sync + last-micro-batch sync
would do, without overlapping the communication with the backward.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """This rank's rows lo..hi of a global batch of n (the shares tile 0..n)."""
        return self.rank * n // self.world, (self.rank + 1) * n // self.world

    def all_reduce_grads(self, params) -> None:
        """Sum every parameter's gradient over the ranks (one flat buffer)."""
        if self.world == 1:
            return
        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        torch.distributed.all_reduce(flat)
        i = 0
        for p in params:
            p.grad.copy_(flat[i:i + p.numel()].view_as(p))
            i += p.numel()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a small fp64 vector (losses, metrics)."""
        if self.world > 1:
            torch.distributed.all_reduce(values)
        return values

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of `t`, concatenated in rank order (the shares may differ by one row)."""
        if self.world == 1:
            return t
        n = torch.tensor([t.shape[0]], device=t.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        torch.distributed.all_gather(sizes, n)
        counts = [int(s) for s in sizes]
        pad = t.new_zeros((max(counts), *t.shape[1:]))
        pad[:t.shape[0]] = t
        # gloo gathers no bf16: move the bytes as int16 of the same width
        wire = pad.view(torch.int16) if pad.dtype == torch.bfloat16 else pad
        out = [torch.empty_like(wire) for _ in range(self.world)]
        torch.distributed.all_gather(out, wire)
        if pad.dtype == torch.bfloat16:
            out = [o.view(torch.bfloat16) for o in out]
        return torch.cat([o[:c] for o, c in zip(out, counts)])

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def from_env(device: torch.device) -> tuple[Dist, torch.device]:
    """(this process's rank, the device it trains on). One process: (Dist(), device).
    Under torchrun / Ray Train / Slurm tasks (WORLD_SIZE > 1) the process group is set
    up here (NCCL on CUDA, gloo on CPU) and each rank takes cuda:LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                             rank=rank, world_size=world)
    return Dist(rank, world, local), device

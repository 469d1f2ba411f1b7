"""Data-parallel training of one point across processes (torch.distributed).

An adapter around the one training loop, not a second loop. The ranks come either
from the launcher (torchrun, or anything else that sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT) or from the point itself: with train.data_parallel = k > 1 (the
planner sets it from a trial's `resources.gpus`), the process that trains the point
becomes rank 0 and starts ranks 1..k-1 on this machine, one per visible GPU. That
is how a trial given k GPUs by Ray, Slurm (one task, k GPUs) or the local backend
trains on all of them, while the launchers' bookkeeping (locks, manifest, rows)
stays with the one process they started. `setup()` decides; the loop then

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


    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether any rank's flag is set (a stop asked on one rank stops them all at one step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return bool(t.item() > 0)


def setup(cfg, device: torch.device, trial_id: str, sweep: str):
    """(Dist, device, close): this process's rank, its device, and a function to call when
    training ends (joins the ranks this process started, restores the environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    k = cfg.train.data_parallel
    if world > 1 or k <= 1:
        dist, device = from_env(device)
        if _leading and dist.main:
            _tell_followers((cfg, trial_id, sweep))
        return dist, device, lambda: None
    import multiprocessing as mp
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = {key: os.environ.get(key) for key in ENV_KEYS}
    env = lambda rank: {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(k),
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    ctx = mp.get_context("spawn")
    helpers = [ctx.Process(target=_helper_rank, args=(cfg, env(r), trial_id, sweep), daemon=True)
               for r in range(1, k)]
    for h in helpers:
        h.start()
    os.environ.update(env(0))
    try:
        dist, device = from_env(device)
    except Exception:
        _stop(helpers, saved)
        raise

    def close():
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        _stop(helpers, saved)
    return dist, device, close


ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _stop(helpers, saved) -> None:
    for h in helpers:
        h.join(timeout=60)
        if h.is_alive():          # rank 0 failed first: its peers wait on a collective forever
            h.terminate()
            h.join(timeout=30)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _helper_rank(cfg, env: dict, trial_id: str, sweep: str) -> None:
    """Ranks 1..k-1 of a point that started its own ranks: train, write nothing."""
    os.environ.update(env)
    from ..results.store import MemorySink
    from .loop import train
    train(cfg, MemorySink(), trial_id=trial_id, sweep=sweep)


def writes_rows() -> bool:
    """Whether this process is the rank that writes rows and checkpoints (rank 0, or the
    only process). Read from the environment torchrun, Ray, Slurm or setup() gave it."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0


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


# --------------------------------------------------------------- ranks a cluster started
# Slurm with backend.slurm.tasks_per_node (execute/slurm.py) starts every rank of a point
# itself, one task each, on one or several nodes. Task 0 keeps the launcher's
# bookkeeping (lock, manifest, rows: execute/worker.py) and leads; the other tasks
# follow: each time the leader starts training a point (a first attempt, a retry in
# place), it broadcasts the config, and the followers train it too; when the leader is
# done with the trial it broadcasts None and they exit. A follower never decides
# anything: whether the trial is done, busy or given up is the leader's call.
_leading = False


def init_cluster_ranks(timeout_minutes: float = 10.0) -> Dist:
    """Join the process group from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT (set by
    the caller, e.g. submitit's TorchDistributedEnvironment). NCCL when this task has a
    GPU (each rank takes cuda:LOCAL_RANK), gloo otherwise. `timeout_minutes` bounds how
    long a rank waits on a collective when a peer died."""
    import datetime
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                             timeout=datetime.timedelta(minutes=timeout_minutes))
    return Dist(rank, world, local)


def _tell_followers(message) -> None:
    torch.distributed.broadcast_object_list([message], src=0)


def lead(work):
    """Rank 0 of cluster-started ranks: run `work()` (which trains through train(), any
    number of times), then release the followers. Returns what work() returns."""
    global _leading
    _leading = True
    try:
        return work()
    finally:
        _leading = False
        try:
            _tell_followers(None)
        except Exception:          # the group broke (a peer died): the followers end on their own
            pass


def follow(stop=None) -> int:
    """Ranks 1..W-1 of cluster-started ranks: train each config the leader broadcasts,
    writing nothing, until it says None. Returns the number of points trained. A stop
    (train/stop.py) ends the follower at the step where every rank stops."""
    from ..results.store import MemorySink
    from .loop import train
    from .stop import Interrupted
    trained = 0
    while True:
        box = [None]
        try:
            torch.distributed.broadcast_object_list(box, src=0)
        except Exception:          # the leader is gone
            return trained
        if box[0] is None:
            return trained
        cfg, trial_id, sweep = box[0]
        try:
            train(cfg, MemorySink(), trial_id=trial_id, sweep=sweep, stop=stop)
        except Interrupted:
            return trained
        trained += 1

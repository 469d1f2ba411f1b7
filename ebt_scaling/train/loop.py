"""`train(config, sink) -> Summary`: one point, start to finish (or resume).

The loop: seeded batches -> model.loss per micro-batch -> backward (gradients
accumulate; summed over ranks when data-parallel, train/distributed.py) -> clip ->
AdamW with warmup + cosine; a "train" row every log_every steps, an "eval" row every eval_every steps, a
"final" row at the end. A NaN/Inf loss (a non-finite final evaluation even with
train.nan_check off), or any exception, ends the point with a "failed" row that says
why; it never raises to the caller, except `Interrupted` (train/stop.py): a stop asked
for from outside, after a checkpoint, with no final row. Checkpoints are taken every
train.checkpoint_every steps and every train.checkpoint_minutes of wall time.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import __version__
from ..config import Config, ConfigError
from ..data import build_source, inputs_of, val_hash
from ..flops import mfu, non_embedding_params, peak_flops, total_params, train_flops_per_token
from ..models.registry import build_model
from ..results.schema import Row
from ..results.store import MemorySink, TeeSink
from . import checkpoint, distributed
from .evaluate import evaluate
from .optim import build_optimizer, lr_at, set_lr
from .stop import Interrupted, StopRequest


class PointFailed(RuntimeError):
    """Training of this point cannot go on (NaN/Inf, diverged)."""


@dataclass
class Summary:
    trial_id: str
    status: str
    error: str = ""
    steps: int = 0
    tokens: int = 0
    flops: float = 0.0
    val_loss: float = math.nan
    val_ppl: float = math.nan
    wall_time: float = 0.0
    failure: str = ""           # how it failed: config (a retry would repeat it), environment
    #                             (disk, memory: not the point's fault) or training (NaN, a bug)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{torch.get_num_threads()}t"


def with_vocab(cfg: Config, vocab_size: int) -> Config:
    if cfg.model.vocab_size not in (0, vocab_size):
        raise ValueError(f"model.vocab_size={cfg.model.vocab_size} but the data's tokenizer has "
                         f"{vocab_size} tokens; leave model.vocab_size at 0")
    return replace(cfg, model=replace(cfg.model, vocab_size=vocab_size))


def base_row(cfg: Config, trial_id: str, sweep: str) -> dict:
    m = cfg.model
    return dict(
        trial_id=trial_id, family=cfg.family_name, sweep=sweep, config_hash=cfg.hash(with_seed=False),
        seed=cfg.seed, n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_ffn=m.d_ffn,
        vocab_size=m.vocab_size, seq_len=cfg.data.seq_len, batch_size=cfg.train.batch_size,
        batch_tokens=cfg.batch_tokens, total_steps=cfg.total_steps, total_tokens=cfg.total_tokens,
        peak_lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, n_params=non_embedding_params(cfg),
        n_params_total=total_params(cfg), flops_per_token=train_flops_per_token(cfg),
        dataset=cfg.data.source, config_json=json.dumps(cfg.to_dict(), default=list),
        package_version=__version__)


def flush_denormals() -> None:
    """Treat denormal floats as zero on the CPU (x86 FTZ/DAZ; a no-op where unsupported).

    An EBT's softmax over logits moved by a large alpha underflows into denormals
    (below 1.2e-38), and each arithmetic operation on one costs about a hundred times a
    normal one: S1 training steps ran up to 2x slower while they lasted (S1 at L2 d128,
    batch 16, ctx 128: 240-490 ms per step against a steady 240 ms flushed;
    benchmarks/RESULTS.md). Flushing changes values only below 1.2e-38; a shipped study
    trial retrained with it reproduced its validation loss bit for bit. GPUs under bf16
    autocast flush anyway."""
    torch.set_flush_denormal(True)


def train(cfg: Config, sink, trial_id: str | None = None, sweep: str = "",
          stop: StopRequest | None = None) -> Summary:
    """Train one point, writing rows to `sink` (emit/flush/truncate_after/close; see
    results/store.py). The trackers `train.track` names see every row too. `stop`,
    once asked, makes the loop checkpoint and raise Interrupted."""
    trial_id = trial_id or cfg.hash()
    if not distributed.writes_rows():
        sink = MemorySink()      # rows, checkpoints and logs are written by rank 0 only: a rank
        # that closed the caller's file sink would overwrite rank 0's rows with its empty list
    if cfg.train.track and distributed.writes_rows():     # one run per point in the tracker, not one per rank
        from ..results.trackers import make_trackers
        sink = TeeSink(sink, *make_trackers(cfg.train.track, cfg.train.track_dir or "runs/tracking",
                                            project=sweep or cfg.name))
    summary = _train(cfg, sink, trial_id, sweep, stop)
    if hasattr(sink, "close"):
        try:
            sink.close(summary.status)
        except OSError as e:      # a full disk: the rows on disk say "running"; a retry resumes
            summary.error = f"could not write the rows: {e}" + (f": {summary.error}" if summary.error else "")
            summary.status, summary.failure = "failed", "environment"
    return summary


# errors that, raised before the first step, say the configuration is wrong
SETUP_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError, AssertionError)


def _train(cfg: Config, sink, trial_id: str, sweep: str, stop: StopRequest | None) -> Summary:
    t0 = time.time()
    state = {"step": 0, "tokens": 0, "flops": 0.0, "training": False}
    base: dict = {"trial_id": trial_id, "family": cfg.family_name, "sweep": sweep, "seed": cfg.seed}
    device = pick_device(cfg.train.device)
    close = lambda: None
    try:
        dist, device, close = distributed.setup(cfg, device, trial_id, sweep)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        flush_denormals()
        source = build_source(cfg.data, need_tokens=cfg.total_tokens)
        cfg = with_vocab(cfg, source.vocab_size)
        base = base_row(cfg, trial_id, sweep)
        base["val_hash"] = val_hash(source, cfg.data.seq_len, cfg.train.eval_tokens)
        base.update(device=device_label(device), dtype=_dtype_name(cfg, device))
        return _run(cfg, sink, source, device, base, state, t0, dist, stop)
    except Exception as e:  # a failed point is data, not a crash of the sweep
        reason = f"{type(e).__name__}: {e}"
        if not isinstance(e, PointFailed):
            reason += "\n" + traceback.format_exc(limit=6)
        failure = ("config" if isinstance(e, ConfigError) or (not state["training"] and isinstance(e, SETUP_ERRORS))
                   else "environment" if isinstance(e, (OSError, MemoryError)) else "training")
        try:     # the failure path itself must not raise (a full disk): the trial stays retryable
            sink.emit(Row(kind="final", status="failed", error=reason, step=state["step"],
                          tokens=state["tokens"], flops=state["flops"], wall_time=time.time() - t0,
                          time_unix=time.time(), **base))
            sink.flush()
        except Exception as write_error:     # said first: status shows the first line
            reason = f"its failed row could not be written ({type(write_error).__name__}: {write_error}): {reason}"
            failure = "environment"
        return Summary(trial_id, "failed", reason, state["step"], state["tokens"], state["flops"],
                       wall_time=time.time() - t0, failure=failure)
    finally:
        close()


def _dtype_name(cfg: Config, device: torch.device) -> str:
    p = cfg.train.precision
    return ("bf16" if device.type == "cuda" else "fp32") if p == "auto" else p


def _run(cfg: Config, sink, source, device, base, state, t0, dist, stop: StopRequest | None) -> Summary:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    counted = sum(p.numel() for p in model.parameters())
    if counted != base["n_params_total"]:
        raise AssertionError(f"parameter count {counted} != analytic {base['n_params_total']} (flops.py)")
    opt = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    micro = micro_batch_size(cfg, device, dist.world)
    if cfg.train.compile:
        compile_model(model)
    autocast = base["dtype"] == "bf16"
    peak = peak_flops(base["device"], base["dtype"])
    total, S, B = cfg.total_steps, cfg.data.seq_len, cfg.train.batch_size
    fpt = base["flops_per_token"]
    ckpt_path = Path(cfg.train.checkpoint_dir) / "last.pt" if cfg.train.checkpoint_dir else None

    start = 0
    if ckpt_path and ckpt_path.exists():
        start, extra = checkpoint.load(ckpt_path, model, opt, device, expect_hash=cfg.hash())
        if hasattr(model, "load_extra_state"):
            model.load_extra_state(extra)
        sink.truncate_after(start)       # rows past the checkpoint will be made again
    state.update(step=start, tokens=_tokens_before(start, cfg), flops=_tokens_before(start, cfg) * fpt)

    def row(kind, **kw):   # rows before the final one say the trial is still running
        return Row(kind=kind, step=state["step"], tokens=state["tokens"], flops=state["flops"],
                   wall_time=time.time() - t0, time_unix=time.time(),
                   status="ok" if kind == "final" else "running", **base, **kw)

    def run_eval(kind):
        ev = evaluate(model, source, cfg, device, autocast)
        if kind == "final" and not math.isfinite(ev["loss"]):   # never an ok final row without a loss
            raise PointFailed(f"validation loss is {ev['loss']} at the final evaluation (step {state['step']})")
        sink.emit(row(kind, val_loss=ev["loss"], val_ppl=ppl(ev["loss"]),
                      train_loss=last["loss"], lr=last["lr"], tokens_per_s=last["tps"],
                      mfu=last["mfu"], **ev["ebt"]))
        sink.flush()
        if not math.isfinite(ev["loss"]):
            raise PointFailed(f"validation loss is {ev['loss']} at step {state['step']}")
        return ev

    def save_checkpoint(done: bool) -> None:
        sink.flush()   # rows up to the checkpoint must be on disk: a resume keeps them
        # the replay buffer goes beside the checkpoint (last.extra.pt), and not at all
        # once the point is done: nothing resumes a finished point
        extra = model.extra_state() if hasattr(model, "extra_state") and not done else None
        checkpoint.save(ckpt_path, model, opt, state["step"], extra,
                        config=cfg.to_dict(), trial_id=base["trial_id"], config_hash=cfg.hash())

    last = {"loss": math.nan, "lr": math.nan, "tps": math.nan, "mfu": math.nan}
    window_tokens, window_time = 0, 0.0
    every_s = 60.0 * cfg.train.checkpoint_minutes
    last_save = time.monotonic()
    model.train()
    state["training"] = True
    for step in range(start, total):
        tic = time.perf_counter()
        n_seq = min(B, (cfg.total_tokens - state["tokens"]) // S) if cfg.train.tokens else B
        batch = source.train_batch(step, n_seq, S, cfg.seed).to(device)     # the global batch
        lr = lr_at(step, total, cfg)
        set_lr(opt, lr)
        opt.zero_grad(set_to_none=True)
        loss, info = accumulate(model, batch, step, cfg, dist, micro, autocast, params)
        if step == cfg.train.fail_at_step:
            loss = loss * math.nan
        if cfg.train.nan_check and not math.isfinite(loss):
            state["step"] = step
            raise PointFailed(f"training loss is {loss} at step {step} (diverged); "
                              f"lower optim.lr or raise optim.warmup_frac")
        dist.all_reduce_grads(params)
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or float("inf"))
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step(gather=dist.gather_rows if dist.world > 1 else None)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - tic
        ntok = n_seq * S
        state["step"], state["tokens"], state["flops"] = step + 1, state["tokens"] + ntok, state["flops"] + ntok * fpt
        window_tokens += ntok
        window_time += dt
        done = step + 1 == total
        if (step + 1) % cfg.train.log_every == 0 or done:
            tps = window_tokens / window_time
            last = {"loss": loss, "lr": lr, "tps": tps, "mfu": mfu(fpt * tps, peak)}
            sink.emit(row("train", train_loss=last["loss"], lr=lr, grad_norm=float(gnorm),
                          tokens_per_s=tps, mfu=last["mfu"], **info))
            window_tokens, window_time = 0, 0.0
        if (step + 1) % cfg.train.eval_every == 0 and not done:
            run_eval("eval")
            model.train()
        asked = dist.any(bool(stop), device) and not done   # all ranks stop at the same step
        if ckpt_path and dist.main and (done or asked or (cfg.train.checkpoint_every
                                                          and (step + 1) % cfg.train.checkpoint_every == 0)
                                        or (every_s and time.monotonic() - last_save >= every_s)):
            save_checkpoint(done)
            last_save = time.monotonic()
        if asked:
            sink.flush()
            raise Interrupted(state["step"], stop.reason, stop.requeue)
    ev = run_eval("final")
    return Summary(base["trial_id"], "ok", steps=state["step"], tokens=state["tokens"],
                   flops=state["flops"], val_loss=ev["loss"], val_ppl=ppl(ev["loss"]),
                   wall_time=time.time() - t0)


def accumulate(model, batch, step: int, cfg: Config, dist, micro: int, autocast: bool, params):
    """Forward and backward of this rank's share of the global batch, `micro` rows at a
    time (0: all at once); gradients accumulate in .grad. Each part's loss is its
    share of the global batch's mean loss, so the parts (and ranks) sum to the whole
    batch's loss and gradient. Every part re-seeds the generator at the step's seed
    and the model draws its noise for the whole batch (models/ebt.py), so any split
    trains as the whole batch does. Returns (global loss, metrics) as floats, summed
    over ranks."""
    n = batch.shape[0]
    lo, hi = dist.share(n)
    whole = dist.world == 1 and (micro <= 0 or micro >= n)
    scored = int((batch[:, 1:] >= 0).sum())      # targets the whole batch scores (PAD is masked)
    size = (hi - lo) if micro <= 0 else micro
    total, infos = 0.0, {}
    for a in range(lo, hi, max(1, size)):
        b = min(a + size, hi)
        torch.manual_seed(cfg.seed * 1_000_003 + step)   # EBT noise: a pure function of step
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, info = model.loss(inputs_of(batch[a:b]), batch[a:b, 1:], step=step, rows=None if whole else (a, n, scored))
        backward(loss, params)
        total = total + loss.detach()
        share = info.pop("_share", (b - a) / n)     # the part's weight in the batch's means
        for k, v in info.items():
            infos[k] = infos.get(k, 0.0) + float(v) * share
    keys = sorted(infos)
    summed = dist.sum(torch.tensor([float(total)] + [infos[k] for k in keys], dtype=torch.float64,
                                   device=batch.device)).tolist()
    return summed[0], dict(zip(keys, summed[1:]))


def backward(loss, params) -> None:
    """loss.backward() into the parameters only: autograd then never computes (or keeps)
    a gradient for anything else, such as the EBT's thinking leaves (B, S, V each)."""
    loss.backward(inputs=params)


def micro_batch_size(cfg: Config, device: torch.device, world: int) -> int:
    """train.micro_batch_size as rows per forward (0: a rank's whole share at once);
    "auto" asks the memory model for the largest that fits the device's free memory."""
    mb = cfg.train.micro_batch_size
    if mb == "auto":
        from ..memory import auto_micro_batch, free_memory
        return auto_micro_batch(cfg, free_memory(device), world)
    return int(mb)


def compile_model(model) -> None:
    """train.compile: torch.compile what can be. Transformer++: the whole forward. EBT:
    the observed (context) stream only, which the loss differentiates once; the
    predicted stream is differentiated twice (the thinking gradient is itself
    differentiated), and aot_autograd does not support double backward."""
    if model.__class__.__name__ == "EBT":
        model.context = torch.compile(model.context)
    else:
        model.compile()


def ppl(loss: float) -> float:
    """Perplexity, capped at e^50 so that a diverging point still gives a finite number."""
    return math.exp(min(loss, 50.0))


def _tokens_before(step: int, cfg: Config) -> int:
    """Tokens seen after `step` full steps (only the last step can be short)."""
    return min(step * cfg.batch_tokens, cfg.total_tokens)

"""System-2 evaluation of a trained point: thinking longer and self-verification.

For an EBT, on each evaluation set:
  * think longer: one chain of max(steps) optimisation steps; the loss after k steps
    is recorded for every k in `steps` (forward passes = k);
  * self-verify: N chains from fresh random starts (+ Langevin noise), each run for
    `verify_steps`; at every (sequence, position) the candidate with the lowest final
    energy is kept (best-of-N; forward passes = N * verify_steps).
Perplexity is exp(mean final-step loss), teacher-forced over every token (the recipe:
a perplexity averaged over steps would be an upper bound). A Transformer++ gives one
row per set (one forward pass): the flat line.
Energies in think rows are noise-free: energy_first at the first chain's random start,
energy_last after the row's steps (for best-of-N, of the kept candidate at each
position; the think-longer chain is best-of-N's first candidate).
OOD ratio (one number per set and model): the set's perplexity over the validation
perplexity, both at the default thinking (eval steps, one candidate).
Per-token energies of the first validation batch are returned for "easy token" figures,
and every configuration's summed loss per sequence (a frame beside the rows) so the
fit can give each thinking improvement a 95% interval by resampling sequences.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import ConfigError, config_from_dict
from ..data import build_source
from ..data.ood import ood_tokens
from ..data.sources import ArraySource
from ..data.tokenizers import build_tokenizer
from ..models.registry import build_model
from ..results.schema import Row
from .loop import base_row, device_label, flush_denormals, pick_device, ppl


def load_point(checkpoint: str | Path, device: str = "cpu"):
    """(config, model in eval mode, trial id) from a checkpoint written by train()."""
    # mmap: tensors are read only when used, so an older checkpoint's replay buffer is never loaded
    state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    if not state.get("config"):
        raise ValueError(f"{checkpoint}: this checkpoint carries no config; re-train with a "
                         "checkpoint_dir set (ebt-sweep train --checkpoint-dir DIR)")
    cfg = config_from_dict(state["config"], str(checkpoint))
    model = build_model(cfg).to(pick_device(device))
    model.load_state_dict(state["model"])
    return cfg, model.eval(), state.get("trial_id") or cfg.hash()


def _set_batches(name, cfg, source, n_tokens):
    S = cfg.data.seq_len
    if name == "val":
        return list(source.val_batches(n_tokens, cfg.train.batch_size, S))
    arr = ood_tokens(name, build_tokenizer(cfg.data.tokenizer))
    return list(ArraySource(name, arr, arr, cfg.model.vocab_size).val_batches(n_tokens, cfg.train.batch_size, S))


def _ce(logits, targets) -> torch.Tensor:
    """Summed next-token loss (nats) of each sequence in the batch, shape (B,)."""
    loss = F.cross_entropy(logits.detach().float().transpose(1, 2), targets, reduction="none")
    return loss.sum(dim=1).cpu()


class _Acc(dict):
    """(think_steps, n_candidates) -> [per-sequence summed losses, summed first energy, summed last energy]."""

    def add(self, key, loss, e_first=math.nan, e_last=math.nan, n=1):
        r = self.setdefault(key, [[], 0.0, 0.0])
        r[0].append(loss)
        r[1] += e_first * n
        r[2] += e_last * n


def _think_batch(model, x, t, steps, candidates, verify_steps, acc: _Acc, want_tokens: bool):
    n = t.numel()
    kvs = None if model.per_step_context else torch.no_grad()(model.context)(x)
    energy = lambda y, k: model.energy_map(x, y, k, kvs)                      # (B, S)
    longest = max(max(steps), verify_steps)
    # think longer: one chain, read off after every requested step count; it is also
    # the first candidate of self-verification
    y0 = torch.randn(*x.shape, model.vocab_size, device=x.device) * model.e.init_std
    e_start = float(energy(y0, 0).mean())
    logits, _ = model.think(x, longest, y0=y0, learning=False, randomize=False, noise=True)
    for k in steps:
        acc.add((k, 1), _ce(logits[k - 1], t), e_start, float(energy(logits[k - 1], k).mean()), n)
    best = logits[verify_steps - 1].detach()
    best_e = energy(best, verify_steps)
    tokens = None
    if want_tokens:
        tokens = (t, best_e, F.cross_entropy(best.float().transpose(1, 2), t, reduction="none"))
    if verify_steps not in steps:
        acc.add((verify_steps, 1), _ce(best, t), e_start, float(best_e.mean()), n)
    # self-verification: fresh chains, the lowest final energy kept per position
    for c in range(2, max(candidates) + 1):
        y0 = torch.randn(*x.shape, model.vocab_size, device=x.device) * model.e.init_std
        final = model.think(x, verify_steps, y0=y0, learning=False, randomize=False, noise=True)[0][-1].detach()
        e = energy(final, verify_steps)
        better = e < best_e
        best = torch.where(better[..., None], final, best)
        best_e = torch.where(better, e, best_e)
        if c in candidates:
            acc.add((verify_steps, c), _ce(best, t), e_start, float(best_e.mean()), n)
    return tokens


def system2(cfg, model, sets=("val", "ood:dyck", "ood:arith", "ood:python"),
            steps=(1, 2, 3, 6, 15, 30), candidates=(1, 2, 5, 10), verify_steps: int | None = None,
            n_tokens: int = 16384, seed: int = 0, trial_id: str = "", sweep: str = ""):
    """Returns (think rows, per-token energy frame or None, per-sequence loss frame).

    The per-sequence frame has one row per (eval_set, think_steps, n_candidates,
    sequence): its summed loss (nats) and token count; ebt_scaling.fit resamples
    sequences from it for the intervals of the thinking improvements.
    """
    flush_denormals()
    device = next(model.parameters()).device
    if cfg.data.targets == "pad":
        raise ConfigError("think: points trained with data.targets: pad are not supported yet "
                          "(System-2 scoring counts every target)")
    source = build_source(cfg.data)
    base = base_row(cfg, trial_id or cfg.hash(), sweep)
    base.update(device=device_label(device), dtype="fp32")
    is_ebt = cfg.is_ebt
    verify_steps = (verify_steps or cfg.ebt.default_eval_steps) if is_ebt else 1
    steps, candidates = sorted(set(steps)), sorted(set(candidates))
    rows, tokens_frame, sequences = [], None, []
    t0 = time.time()
    for name in sets:
        torch.manual_seed(seed)
        batches = _set_batches(name, cfg, source, n_tokens)
        count = sum(b[:, 1:].numel() for b in batches)
        acc = _Acc()
        for bi, batch in enumerate(batches):
            batch = batch.to(device)
            x, t = batch[:, :-1], batch[:, 1:]
            if not is_ebt:
                with torch.no_grad():
                    acc.add((1, 1), _ce(model(x), t))
                continue
            tok = _think_batch(model, x, t, steps, candidates, verify_steps, acc, name == "val" and bi == 0)
            if tok is not None:
                tt, e, loss_tok = tok
                tokens_frame = pd.DataFrame({
                    "trial_id": base["trial_id"], "family": base["family"],
                    "sequence": np.repeat(np.arange(x.shape[0]), x.shape[1]),
                    "position": np.tile(np.arange(x.shape[1]), x.shape[0]), "token": tt.flatten().cpu().numpy(),
                    "energy": e.flatten().cpu().numpy(), "loss": loss_tok.flatten().detach().cpu().numpy()})
        seq_tokens = np.concatenate([np.full(b.shape[0], b.shape[1] - 1) for b in batches])
        for (k, n), (per_seq, e_first, e_last) in sorted(acc.items()):
            per_seq = torch.cat(per_seq).numpy().astype(float)
            loss = float(per_seq.sum()) / count
            sequences.append(pd.DataFrame({"trial_id": base["trial_id"], "family": base["family"],
                                           "eval_set": name, "think_steps": k, "n_candidates": n,
                                           "sequence": np.arange(per_seq.size), "loss_sum": per_seq,
                                           "n_tokens": seq_tokens}))
            rows.append(Row(kind="think", eval_set=name, think_steps=k, n_candidates=n, forward_passes=k * n,
                            val_loss=loss, val_ppl=ppl(loss), energy_first=e_first / count,
                            energy_last=e_last / count,
                            ebt_steps=float(verify_steps) if is_ebt else math.nan,   # the point's own
                            step=base["total_steps"], tokens=base["total_tokens"],
                            flops=base["total_tokens"] * base["flops_per_token"],
                            wall_time=time.time() - t0, time_unix=time.time(), **base))
    ppl_at = {(r.eval_set, r.think_steps, r.n_candidates): r.val_ppl for r in rows}
    for r in rows:
        ref = ppl_at.get(("val", verify_steps, 1))
        own = ppl_at.get((r.eval_set, verify_steps, 1))
        r.ood_ratio = own / ref if ref and own else math.nan
    return rows, tokens_frame, pd.concat(sequences, ignore_index=True)

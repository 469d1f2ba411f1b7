"""System-2 evaluation of a trained point: thinking longer and self-verification.

For an EBT, on each evaluation set:
  * think longer: one chain of max(steps) optimisation steps; the loss after k steps
    is recorded for every k in `steps` (forward passes = k);
  * self-verify: N chains from fresh random starts (+ Langevin noise), each run for
    `verify_steps`; at every (sequence, position) the candidate with the lowest final
    energy is kept (best-of-N; forward passes = N * verify_steps).
Perplexity is exp(mean final-step loss), teacher-forced over every token (the recipe:
a perplexity averaged over steps would be an upper bound). A Transformer++ gives one
row per set (one forward pass): the flat line. OOD ratio = the set's perplexity over the
in-distribution validation perplexity of the same model.
Per-token energies of the first validation batch are returned for "easy token" figures.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import config_from_dict
from ..data import build_source
from ..data.ood import ood_tokens
from ..data.sources import ArraySource
from ..data.tokenizers import build_tokenizer
from ..models.registry import build_model
from ..results.schema import Row
from .loop import base_row, device_label, pick_device


def load_point(checkpoint: str | Path, device="cpu"):
    state = torch.load(checkpoint, map_location=device, weights_only=False)
    if not state.get("config"):
        raise ValueError(f"{checkpoint}: this checkpoint carries no config; re-train with a "
                         "checkpoint_dir set (ebt-sweep train --checkpoint-dir DIR)")
    cfg = config_from_dict(state["config"], str(checkpoint))
    model = build_model(cfg).to(device)
    model.load_state_dict(state["model"])
    return cfg, model.eval()


def _set_batches(name, cfg, source, n_tokens):
    S = cfg.data.seq_len
    if name == "val":
        return list(source.val_batches(n_tokens, cfg.train.batch_size, S))
    arr = ood_tokens(name, build_tokenizer(cfg.data.tokenizer))
    return list(ArraySource(name, arr, arr, cfg.model.vocab_size).val_batches(n_tokens, cfg.train.batch_size, S))


def _ce(logits, targets):
    """Summed next-token loss (nats) over the batch."""
    return float(F.cross_entropy(logits.detach().float().flatten(0, 1), targets.flatten(), reduction="sum"))


def system2(cfg, model, sets=("val", "ood:dyck", "ood:arith", "ood:python"),
            steps=(1, 2, 3, 6, 15, 30), candidates=(1, 2, 5, 10), verify_steps: int | None = None,
            n_tokens: int = 4096, seed: int = 0, trial_id: str = "", sweep: str = ""):
    """Returns (rows, per-token energy frame)."""
    device = next(model.parameters()).device
    source = build_source(cfg.data)
    base = base_row(cfg, trial_id or cfg.hash(), sweep)
    base.update(device=device_label(device), dtype="fp32")
    is_ebt = cfg.is_ebt
    if is_ebt:
        verify_steps = verify_steps or cfg.ebt.eval_steps or (cfg.ebt.steps + cfg.ebt.random_extra_steps)
    steps, candidates = sorted(set(steps)), sorted(set(candidates))
    rows, tokens_frame = [], None
    t0 = time.time()
    for name in sets:
        torch.manual_seed(seed)
        batches = _set_batches(name, cfg, source, n_tokens)
        count = sum(b[:, 1:].numel() for b in batches)
        results = {}       # (think_steps, n_candidates) -> [summed loss, energy first, energy last]
        for bi, batch in enumerate(batches):
            batch = batch.to(device)
            x, t = batch[:, :-1], batch[:, 1:]
            if not is_ebt:
                with torch.no_grad():
                    results.setdefault((1, 1), [0.0, math.nan, math.nan])[0] += _ce(model(x), t)
                continue
            logits, energies = model.think(x, max(steps), learning=False, randomize=False, noise=True)
            for k in steps:
                r = results.setdefault((k, 1), [0.0, 0.0, 0.0])
                r[0] += _ce(logits[k - 1], t)
                r[1] += float(energies[0]) * t.numel()
                r[2] += float(energies[k - 1]) * t.numel()
            # self-verification: N chains, lowest final energy per position
            finals, emaps = [], []
            for _ in range(max(candidates)):
                lg, _ = model.think(x, verify_steps, learning=False, randomize=False, noise=True)
                finals.append(lg[-1].detach())
                emaps.append(model.energy_map(x, lg[-1], step=verify_steps))
            finals, emaps = torch.stack(finals), torch.stack(emaps)          # (N, B, S, V), (N, B, S)
            for n in candidates:
                best = emaps[:n].argmin(0)                                     # (B, S)
                chosen = finals[:n].gather(0, best[None, ..., None].expand(1, *finals.shape[1:]))[0]
                r = results.setdefault((verify_steps, n), [0.0, 0.0, 0.0])
                if n > 1 or verify_steps not in steps:
                    r[0] += _ce(chosen, t)
                    r[1] += float(emaps[0].mean()) * t.numel()
                    r[2] += float(emaps[:n].min(0).values.mean()) * t.numel()
            if name == "val" and bi == 0:
                e = emaps[0]
                loss_tok = F.cross_entropy(finals[0].float().transpose(1, 2), t, reduction="none")
                tokens_frame = pd.DataFrame({
                    "trial_id": base["trial_id"], "family": base["family"], "sequence": np.repeat(np.arange(x.shape[0]), x.shape[1]),
                    "position": np.tile(np.arange(x.shape[1]), x.shape[0]), "token": t.flatten().cpu().numpy(),
                    "energy": e.flatten().cpu().numpy(), "loss": loss_tok.flatten().detach().cpu().numpy()})
        for (k, n), (loss_sum, e_first, e_last) in sorted(results.items()):
            loss = loss_sum / count
            ppl = math.exp(min(loss, 50.0))
            rows.append(Row(kind="think", eval_set=name, think_steps=k, n_candidates=n, forward_passes=k * n,
                            val_loss=loss, val_ppl=ppl, energy_first=e_first / count if is_ebt else math.nan,
                            energy_last=e_last / count if is_ebt else math.nan, step=base["total_steps"],
                            tokens=base["total_tokens"], flops=base["total_tokens"] * base["flops_per_token"],
                            wall_time=time.time() - t0, time_unix=time.time(), **base))
    # OOD ratio: how far out of distribution a set is for this model, one number per set:
    # its perplexity over the validation perplexity, both at the default thinking
    # (the point's eval steps, one candidate; one forward pass for Transformer++).
    ref_steps = verify_steps if is_ebt else 1
    ppl_at = {(r.eval_set, r.think_steps, r.n_candidates): r.val_ppl for r in rows}
    for r in rows:
        ref = ppl_at.get(("val", ref_steps, 1))
        r.ood_ratio = ppl_at[(r.eval_set, ref_steps, 1)] / ref if ref else math.nan
    return rows, tokens_frame

"""AdamW with the recipe's settings and the warmup + cosine schedule."""
from __future__ import annotations

import math

import torch

from ..config import Config


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Weight decay on matrices and embeddings; none on norms and on alpha (recipe:
    alpha has no weight decay and its own LR multiplier)."""
    o = cfg.optim
    decay, no_decay, alpha = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name == "alpha":
            alpha.append(p)
        elif p.ndim >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [dict(params=decay, weight_decay=o.weight_decay, lr_mult=1.0),
              dict(params=no_decay, weight_decay=0.0, lr_mult=1.0)]
    if alpha:
        groups.append(dict(params=alpha, weight_decay=0.0, lr_mult=getattr(model, "alpha_lr_mult", 1.0)))
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, betas=o.betas, eps=o.eps)


def lr_at(step: int, total_steps: int, cfg: Config) -> float:
    """Linear warmup to the peak, then cosine to peak * min_lr_ratio at the last step."""
    o = cfg.optim
    warmup = int(o.warmup_frac * total_steps)
    if step < warmup:
        return o.lr * (step + 1) / warmup
    span = max(1, total_steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = o.lr * o.min_lr_ratio
    return floor + (o.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)

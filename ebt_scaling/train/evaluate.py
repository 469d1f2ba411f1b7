"""Held-out evaluation: mean next-token loss over the fixed validation windows."""
from __future__ import annotations

import math

import torch

from ..config import Config
from ..data import PAD, inputs_of


def evaluate(model, source, cfg: Config, device, autocast: bool) -> dict:
    """{"loss": nats/token, "ebt": EBT columns for the row (empty for Transformer++)}."""
    model.eval()
    total, count = 0.0, 0
    ebt_sums: dict[str, float] = {}
    for batch in source.val_batches(cfg.train.eval_tokens, cfg.train.batch_size, cfg.data.seq_len):
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, info = model.eval_loss(inputs_of(batch), batch[:, 1:])
        n = int((batch[:, 1:] != PAD).sum())          # masked padding is not scored
        total += float(loss) * n
        count += n
        for k, v in info.items():
            ebt_sums[k] = ebt_sums.get(k, 0.0) + float(v) * n
    return {"loss": total / count if count else math.nan,
            "ebt": {k: v / count for k, v in ebt_sums.items()}}

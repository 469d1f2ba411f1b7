import os

import pytest
import torch

from ebt_scaling.config import config_from_dict

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tiny(family="transformer_pp", **sections):
    """A tiny resolved Config; `sections` are dicts merged over the defaults."""
    d = {"model": {"family": family, "n_layers": 2, "d_model": 32, "n_heads": 2},
         "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16},
         "train": {"batch_size": 8, "steps": 20, "eval_every": 10, "eval_tokens": 256, "log_every": 5}}
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(d, "<test>")


@pytest.fixture
def tiny_cfg():
    return tiny

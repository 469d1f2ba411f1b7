"""Run by tests/test_distributed.py under torchrun: train one point from a YAML config,
optionally dying (on rank 0, as a killed job would) right after a given step's row."""
import sys

import torch

from ebt_scaling.config import load_config
from ebt_scaling.models.ebt import EBT
from ebt_scaling.results.store import ParquetSink
from ebt_scaling.train import train


class Killed(BaseException):
    pass


class DiesAt(ParquetSink):
    def __init__(self, path, step):
        super().__init__(path)
        self.step = step

    def emit(self, row):
        super().emit(row)
        if row.kind == "train" and row.step == self.step:
            raise Killed()


if __name__ == "__main__":
    config, out, die_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    EBT.replay_dtype = torch.float32     # see tests/test_accumulate.py fp32_replay
    torch.set_num_threads(1)
    sink = DiesAt(out, die_at) if die_at >= 0 else ParquetSink(out)
    s = train(load_config(config), sink)
    sys.exit(0 if s.status == "ok" else 1)

"""A Trial: one fully resolved training point of a sweep, and its identity.

The id is Config.hash() of the resolved config (seed included, name excluded), so
planning the same spec twice gives the same ids, and a point added to an axis gets a
new id while the others keep theirs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config, config_from_dict
from .spec import Resources


@dataclass(frozen=True)
class Trial:
    id: str
    family: str                     # transformer_pp | ebt_s1 | ebt_s2
    config: Config
    sweep: str                      # the spec name; rows carry it in `sweep`
    seed: int
    resources: Resources
    flops: float                    # estimated training FLOPs (analytic, flops.py)
    est_seconds: float              # estimated wall time on the spec's est_flops_per_s
    point: dict = field(default_factory=dict)   # the axis values that made it, for display

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.point.items())

    def to_json(self) -> dict:
        return {"id": self.id, "family": self.family, "sweep": self.sweep, "seed": self.seed,
                "config": self.config.to_dict(), "resources": [self.resources.cpus, self.resources.gpus],
                "flops": self.flops, "est_seconds": self.est_seconds, "point": self.point}

    @classmethod
    def from_json(cls, d: dict) -> "Trial":
        cfg = config_from_dict(d["config"], f"trial {d['id']}")
        if cfg.hash() != d["id"]:
            raise ValueError(f"trial {d['id']}: its config hashes to {cfg.hash()}; the planner and this "
                             "worker run different versions of ebt_scaling")
        return cls(id=d["id"], family=d["family"], config=cfg, sweep=d["sweep"], seed=d["seed"],
                   resources=Resources(*d["resources"]), flops=d["flops"], est_seconds=d["est_seconds"],
                   point=d.get("point", {}))

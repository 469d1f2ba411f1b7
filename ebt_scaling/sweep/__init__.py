"""Sweeps: the spec schema (spec.py), scaling rules (rules.py), the pure planner
(plan.py) and the Trial it yields (trial.py). Nothing here touches files or devices."""
from .plan import plan
from .spec import SweepSpec, load_spec, resolve_scale
from .trial import Trial

__all__ = ["plan", "load_spec", "resolve_scale", "SweepSpec", "Trial"]

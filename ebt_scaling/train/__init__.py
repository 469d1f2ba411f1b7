"""Training one point: `train(config, sink) -> Summary`. Knows nothing of Ray or Slurm."""
from .loop import Summary, train  # noqa: F401  (the public entry point)

"""ebt-scaling: scaling-law studies of Energy-Based Transformers against Transformer++.

The pipeline, one way, left to right (each step is a sub-package):

    sweeps/*.yaml --sweep.plan--> Trials --execute--> train.train(point) --rows--> results/*.parquet
        --fit--> fits table --report--> analysis/*.pdf, analysis/report.md

config.py holds the point configuration; models/ the two families; flops.py the
parameter and FLOP accounting; data/ the token sources; results/ the row schema.

The Python API (api.py) gives the CLI's tables as DataFrames:

    from ebt_scaling import load_results, final_points, fit_results, plan
"""
__version__ = "0.1.0"

__all__ = ["load_results", "final_points", "fit_results", "plan", "__version__"]


def __getattr__(name):    # imported on first use: `import ebt_scaling` stays light
    if name in ("load_results", "final_points", "fit_results", "plan"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'ebt_scaling' has no attribute {name!r}")

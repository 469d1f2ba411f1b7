"""ebt-scaling: scaling-law studies of Energy-Based Transformers against Transformer++.

The pipeline, one way, left to right (each step is a sub-package):

    sweeps/*.yaml --sweep.plan--> Trials --execute--> train.train(point) --rows--> results/*.parquet
        --fit--> fits table --report--> analysis/*.pdf, analysis/report.md

config.py holds the point configuration; models/ the two families; flops.py the
parameter and FLOP accounting; data/ the token sources; results/ the row schema.
"""
__version__ = "0.1.0"

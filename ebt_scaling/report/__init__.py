"""Turn fit results into paper-ready output: tables.py (fits.csv, report.md,
stdout summary) and figures.py (PDF + PNG). Only this layer draws; it reads
the objects ebt_scaling.fit returns and computes no fit of its own."""

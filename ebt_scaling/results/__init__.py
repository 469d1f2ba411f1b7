"""Rows (the parquet schema) and the results store."""

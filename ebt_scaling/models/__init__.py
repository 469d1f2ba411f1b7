"""Model families: Transformer++ (the baseline) and the EBT energy function."""

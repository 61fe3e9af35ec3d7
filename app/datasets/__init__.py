"""Datasets: reading uploaded tables, choosing columns, validating and splitting them."""

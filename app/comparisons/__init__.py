"""Comparisons: one job per strategy on the same data, split and seed, judged side by side."""

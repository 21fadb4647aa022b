"""Pair datasets: one module per source."""

"""Benchmarks of nudaq (``nudaq bench``): each figure measured beside its baseline."""

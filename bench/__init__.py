"""Benchmarks runnable as scripts (``python bench/NAME.py``) or importable (``make bench``)."""

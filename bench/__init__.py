"""Micro-benchmarks (python -m bench.<name>)."""

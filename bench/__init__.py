"""Descent's benchmarks: `make bench` runs them; each prints a ratio against a reference."""

"""Benchmarks (`make bench`): measured on this machine, never timed in unit tests."""

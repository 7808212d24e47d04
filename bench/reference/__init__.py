"""Reference implementations the benchmarks compare Charter with (`bench.apps`)."""

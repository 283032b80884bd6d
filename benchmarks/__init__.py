"""Benchmarks of the twins: workloads from the registry, a timing harness, plots (`parity bench`)."""

"""Benchmarks of aigc_django against plain Django peers. See benchmarks/README.md."""

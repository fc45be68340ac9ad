"""Benchmarks against the peer tools and the bare floor."""

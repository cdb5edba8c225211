"""Diagnostics of continual-learning runs (weight changes, importance distributions)."""

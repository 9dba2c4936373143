"""Flax model definitions and their configs (their checkpoint conversion tables: s5jax.official)."""

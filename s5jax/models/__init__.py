"""Flax model definitions and their checkpoint conversion rules."""

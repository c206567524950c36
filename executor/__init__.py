"""Loom package."""

"""Prefect flows, one per release phase (later issues)."""

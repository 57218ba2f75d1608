"""Prefect tasks wrapping units of survey work (later issues)."""

"""Deployment parameter models and release configurations (later issues)."""

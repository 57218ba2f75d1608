"""The lite engine's runbrick: legacypipe's stages on lsdr's own science (issue 5)."""

"""The caller's jobs."""

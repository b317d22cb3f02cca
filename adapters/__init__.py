"""lorag: adapters."""

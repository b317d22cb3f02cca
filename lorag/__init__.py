"""lorag: retrieval-augmented chat for many tenants from one base model."""

__version__ = "0.1.0"

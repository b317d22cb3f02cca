"""/admin/...: tenants and their keys, brands, adapters and training (admin key only)."""

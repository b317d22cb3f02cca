"""/admin/...: tenants and their keys, brands, adapters and training (admin key only)."""

from server.routes.admin import adapters, brands, tenants, training

ROUTERS = [tenants.router, brands.router, adapters.router, training.router]

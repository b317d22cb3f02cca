"""One module per feature; each exposes ``router``."""

from server.routes import chat, documents, health, jobs, models, search
from server.routes.admin import ROUTERS as ADMIN_ROUTERS

ROUTERS = [chat.router, models.router, search.router, documents.router, jobs.router,
           *ADMIN_ROUTERS, health.router]

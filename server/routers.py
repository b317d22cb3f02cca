"""Every feature's router, in the order the app includes them (and OpenAPI lists them)."""

from server.admin import adapters, brands, rollouts as admin_rollouts, tenants, training
from server.admin import limits as admin_limits
from server.chat import router as chat
from server.chat import stored
from server.feedback import router as feedback
from server.documents import router as documents
from server.health import router as health
from server.jobs import router as jobs
from server.models import router as models
from server.rollouts import router as rollouts
from server.search import router as search

ROUTERS = [chat.router, models.router, search.router, documents.router, jobs.router,
           tenants.router, brands.router, adapters.router, training.router, health.router,
           stored.router, feedback.router, rollouts.router, admin_rollouts.router,
           admin_limits.router]

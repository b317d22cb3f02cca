"""Every feature's router, in the order the app includes them (and OpenAPI lists them)."""

from server.admin import adapters, brands, rollouts as admin_rollouts, tenants, training
from server.admin import limits as admin_limits
from server.chat import router as chat
from server.chat import stored
from server.console import router as console
from server.completions import router as completions
from server.embeddings import router as embeddings
from server.feedback import router as feedback
from server.files import router as files
from server.fine_tuning import router as fine_tuning
from server.documents import router as documents
from server.health import router as health
from server.jobs import router as jobs
from server.models import router as models
from server.responses import router as responses
from server.rollouts import router as rollouts
from server.search import router as search
from server.vector_stores import router as vector_stores

ROUTERS = [chat.router, models.router, search.router, documents.router, jobs.router,
           tenants.router, brands.router, adapters.router, training.router, health.router,
           stored.router, feedback.router, rollouts.router, admin_rollouts.router,
           completions.router, embeddings.router, files.router, vector_stores.router,
           responses.router, fine_tuning.router, admin_limits.router, console.router]

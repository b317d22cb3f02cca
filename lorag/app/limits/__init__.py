"""Per-tenant limits, quotas, fair scheduling and usage (see ``service.py``)."""

from lorag.app.limits.service import ChatTicket, LimitView, Quota, TenantLimits
from lorag.app.limits.settings import LimitSettings, LimitValues, SchedulingPolicy

__all__ = ["ChatTicket", "LimitSettings", "LimitValues", "LimitView", "Quota",
           "SchedulingPolicy", "TenantLimits"]

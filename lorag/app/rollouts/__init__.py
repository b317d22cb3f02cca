"""Adapter rollouts: targets, sticky splits, shadow traffic, stored answers, feedback,
promotion gates and automatic rollback (see ``service.RolloutService``)."""

from lorag.app.rollouts.routing import Role
from lorag.app.rollouts.service import Finished, RolloutService, completion_dict

__all__ = ["Finished", "Role", "RolloutService", "completion_dict"]

"""Royalties test helpers. (Tests marked `postgres` are deselected on SQLite by tests/conftest.py.)"""

from tests.royalties.stripe_world import stripe_api, stripe_on

__all__ = ["stripe_api", "stripe_on"]

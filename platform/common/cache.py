"""Cache backends for the rate-limit counters. Their keys are SHA-256 digests made by django-ratelimit, so
Django's per-character key check (written for memcached's rules, a Python loop over every character) is
skipped: it cost as much as the counting itself on the metered access call."""

from __future__ import annotations

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache


class CounterLocMemCache(LocMemCache):
    def validate_key(self, key: str) -> None:
        return None


class CounterRedisCache(RedisCache):
    def validate_key(self, key: str) -> None:
        return None

"""The generators this site offers: the built-in ones and the external ones named in settings."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from media.generators import BUILT_IN, Generator
from media.generators.external import from_config


def available() -> dict[str, Generator]:
    generators: dict[str, Generator] = dict(BUILT_IN)
    try:
        configured = json.loads(settings.STUDIO_EXTERNAL_GENERATORS or "[]")
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"STUDIO_EXTERNAL_GENERATORS is not JSON: {exc}") from None
    if not isinstance(configured, list):
        raise ImproperlyConfigured("STUDIO_EXTERNAL_GENERATORS must be a JSON list of generators")
    for entry in configured:
        try:
            generator = from_config(entry)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"STUDIO_EXTERNAL_GENERATORS: {exc}") from None
        if generator.name in generators:
            raise ImproperlyConfigured(f"STUDIO_EXTERNAL_GENERATORS: the name {generator.name!r} is taken")
        generators[generator.name] = generator
    return generators


def get(name: str) -> Generator | None:
    return available().get(name)

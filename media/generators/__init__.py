"""Generators make a derivative from a licensed parent and the fan's own material. Pure: no Django.

Built in (offline, no model weights): `image-restyle`, `audio-remix` and `voice-convert`. External
generators (an AI vendor's service at a configured URL) are built from settings by `external.from_config`.
"""

from __future__ import annotations

from media.generators.audio_remix import AudioRemix
from media.generators.base import (
    GeneratedMedia,
    GenerationFailed,
    GenerationRequest,
    Generator,
    InputSpec,
    ParentMedia,
    Progress,
    metered_uses,
)
from media.generators.image_restyle import ImageRestyle
from media.generators.voice_convert import VoiceConversion

BUILT_IN: dict[str, Generator] = {
    generator.name: generator for generator in (ImageRestyle(), AudioRemix(), VoiceConversion())
}

__all__ = [
    "BUILT_IN",
    "GeneratedMedia",
    "GenerationFailed",
    "GenerationRequest",
    "Generator",
    "InputSpec",
    "ParentMedia",
    "Progress",
    "metered_uses",
]

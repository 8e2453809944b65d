"""Fingerprints belong to content, not to works: they are keyed by the SHA-256 of the bytes, so the same
file uploaded twice is fingerprinted once, and the catalog maps content back to works."""

from django.db import models
from django.utils import timezone


class FingerprintKind(models.TextChoices):
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    VOICE = "voice", "Voice"
    TEXT = "text", "Text quotes"
    PASSAGES = "passages", "Text passages"
    SEARCH = "search", "Text passages for retrieval"


class Fingerprint(models.Model):
    sha256 = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=FingerprintKind.choices)
    # Versioned by algorithm: a better algorithm adds rows under its own name and the index is rebuilt.
    algorithm = models.CharField(max_length=40)
    data = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sha256", "kind", "algorithm"], name="fingerprint_once_per_algorithm"
            )
        ]
        indexes = [models.Index(fields=["kind", "algorithm", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.algorithm} of {self.sha256[:12]}"

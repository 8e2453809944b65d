"""Datasets: curated, multi-creator collections of works sold to AI vendors as training licences.

A dataset gathers items (one stored file of a member work each), curated automatically: items below the
quality floors or near-duplicates of another item are kept out with the reason shown. A vendor never buys
the moving collection: it licenses an immutable snapshot (the exact item list with each item's content hash,
the terms in force and the owners), and the sale is split pro rata among the snapshot's works.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from common.money import BPS_WHOLE


class DatasetKind(models.TextChoices):
    IMAGE = "image", "Images"
    AUDIO = "audio", "Music and sound"
    VOICE = "voice", "Voices"
    TEXT = "text", "Text (articles, lyrics, books)"


class Pricing(models.TextChoices):
    PER_SNAPSHOT = "per_snapshot", "One price per snapshot"
    PER_ITEM = "per_item", "A price per item in the snapshot"


class Weighting(models.TextChoices):
    ITEMS = "items", "By item count"
    DECLARED = "declared", "By each item's declared weight"
    TOKENS = "tokens", "By tokens contributed (text datasets)"


class DatasetStatus(models.TextChoices):
    OPEN = "open", "Open for contributions"
    CLOSED = "closed", "Closed to new contributions"


class Dataset(models.Model):
    """A curated collection and its own licence offer (always including `ai-train`).

    `curator` is the creator who curates it, or None when the platform does; the curator takes
    `curator_share_bps` of every sale. Changing the terms bumps `terms_version`; snapshots keep the
    version they were cut under.
    """

    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=DatasetKind.choices)
    description = models.TextField(blank=True)
    curator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="curated_datasets",
    )
    curator_share_bps = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=DatasetStatus.choices, default=DatasetStatus.OPEN)
    # The dataset's licence offer.
    uses = models.JSONField(default=list)
    currency = models.CharField(max_length=3)
    pricing = models.CharField(max_length=16, choices=Pricing.choices, default=Pricing.PER_SNAPSHOT)
    price_minor = models.BigIntegerField()
    weighting = models.CharField(max_length=10, choices=Weighting.choices, default=Weighting.ITEMS)
    commercial_use = models.BooleanField(default=False)
    attribution_required = models.BooleanField(default=True)
    territories = models.JSONField(default=list, blank=True)  # empty: worldwide
    expires_at = models.DateTimeField(null=True, blank=True)
    terms_version = models.PositiveIntegerField(default=1)
    # Quality floors (zero turns a floor off).
    min_width = models.PositiveIntegerField(default=256)
    min_height = models.PositiveIntegerField(default=256)
    min_duration_ms = models.PositiveIntegerField(default=3000)
    min_loudness_dbfs = models.SmallIntegerField(default=-50)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=DatasetKind.values), name="dataset_kind_valid"),
            models.CheckConstraint(condition=Q(pricing__in=Pricing.values), name="dataset_pricing_valid"),
            models.CheckConstraint(
                condition=Q(weighting__in=Weighting.values), name="dataset_weighting_valid"
            ),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="dataset_price_non_negative"),
            models.CheckConstraint(condition=Q(curator_share_bps__lte=BPS_WHOLE), name="dataset_curator_bps"),
        ]

    def __str__(self) -> str:
        return f"{self.title} (dataset #{self.pk})"

    def terms(self) -> dict[str, object]:
        """The terms as frozen into a snapshot."""
        return {
            "uses": list(self.uses),
            "currency": self.currency,
            "pricing": self.pricing,
            "price_minor": self.price_minor,
            "weighting": self.weighting,
            "commercial_use": self.commercial_use,
            "attribution_required": self.attribution_required,
            "territories": list(self.territories),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "curator_share_bps": self.curator_share_bps,
            "terms_version": self.terms_version,
        }


class ItemStatus(models.TextChoices):
    INCLUDED = "included", "Included"
    EXCLUDED = "excluded", "Left out by curation"
    OPTED_OUT = "opted_out", "Opted out"


class DatasetItem(models.Model):
    """One file of a work in a dataset. Excluded items keep the reason (`reason_code`, `reason`)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    work = models.ForeignKey("catalog.Work", on_delete=models.PROTECT, related_name="dataset_items")
    asset = models.ForeignKey("catalog.Asset", on_delete=models.PROTECT, related_name="dataset_items")
    sha256 = models.CharField(max_length=64)
    contributor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dataset_items"
    )
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.INCLUDED)
    reason_code = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates"
    )
    weight = models.PositiveIntegerField(default=1)
    # Text items: the text version (the asset's normalised text), its SHA-256 and its token count.
    text_version = models.ForeignKey(
        "catalog.TextVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    text_sha256 = models.CharField(max_length=64, blank=True)
    tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "asset"], name="dataset_item_once"),
            models.CheckConstraint(condition=Q(status__in=ItemStatus.values), name="dataset_item_status"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="dataset_item_weight_positive"),
        ]
        indexes = [
            models.Index(fields=["dataset", "status"]),
            models.Index(fields=["contributor", "dataset"]),
        ]

    def __str__(self) -> str:
        return f"item #{self.pk} ({self.status}) of dataset #{self.dataset_id}"


class TrainingOptOut(models.Model):
    """Do not train: a creator (every work they own) or one work, out of every dataset, now and later.

    Kept in this app rather than on the catalog's models: it is read only by dataset curation.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    work = models.ForeignKey(
        "catalog.Work", null=True, blank=True, on_delete=models.CASCADE, related_name="training_opt_outs"
    )
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, work__isnull=True) | Q(user__isnull=True, work__isnull=False),
                name="opt_out_user_xor_work",
            ),
            models.UniqueConstraint(
                fields=["user"], condition=Q(user__isnull=False), name="opt_out_user_once"
            ),
            models.UniqueConstraint(
                fields=["work"], condition=Q(work__isnull=False), name="opt_out_work_once"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"do-not-train: user #{self.user_id}" if self.user_id else f"do-not-train: work #{self.work_id}"
        )


class Snapshot(models.Model):
    """An immutable cut of a dataset: written once with its items, never changed.

    `items_sha256` is the SHA-256 of the canonical item list (position, content hash, work, offer version),
    so anyone holding the manifest can check they got exactly what was licensed.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="snapshots")
    number = models.PositiveIntegerField()
    terms = models.JSONField()
    terms_version = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    price_minor = models.BigIntegerField()
    item_count = models.PositiveIntegerField()
    items_sha256 = models.CharField(max_length=64)
    # Text snapshots: the tokenizer that counted every item's tokens, their total, and the JSONL shards
    # laid out when the snapshot was cut ([{"name", "first", "last", "records", "bytes", "sha256"}]).
    tokenizer = models.CharField(max_length=120, blank=True)
    total_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    shards = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["dataset_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="snapshot_number_unique"),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="snapshot_price_non_negative"),
        ]

    def __str__(self) -> str:
        return f"snapshot {self.number} of dataset #{self.dataset_id}"


class SnapshotItem(models.Model):
    """One item as it stood when the snapshot was cut: content hash, owners, terms version."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.PROTECT, related_name="entries")
    item = models.ForeignKey(DatasetItem, on_delete=models.PROTECT, related_name="snapshot_entries")
    position = models.PositiveIntegerField()
    work = models.ForeignKey("catalog.Work", on_delete=models.PROTECT, related_name="+")
    blob = models.ForeignKey("catalog.Blob", on_delete=models.PROTECT, related_name="+")
    offer = models.ForeignKey("catalog.Offer", on_delete=models.PROTECT, related_name="+")
    offer_version = models.PositiveIntegerField()
    contributor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    weight = models.PositiveIntegerField()
    owners = models.JSONField()  # [{"name": ..., "share_bps": ...}] from the split sheet in force
    attribution = models.CharField(max_length=400)
    # Text items: the work's title as cut, the text version used, its SHA-256 and token count.
    title = models.CharField(max_length=200, blank=True)
    text_version = models.ForeignKey(
        "catalog.TextVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    text_sha256 = models.CharField(max_length=64, blank=True)
    tokens = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["snapshot_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "position"], name="snapshot_item_position"),
            models.UniqueConstraint(fields=["snapshot", "item"], name="snapshot_item_once"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} of snapshot #{self.snapshot_id}"


class SnapshotOptOut(models.Model):
    """An item opted out (or flagged do-not-train) after the snapshot was cut: the snapshot keeps its
    list, and this records the opt-out against it."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.PROTECT, related_name="opt_outs")
    entry = models.ForeignKey(SnapshotItem, on_delete=models.PROTECT, related_name="opt_outs")
    reason_code = models.CharField(max_length=40)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["recorded_at", "id"]
        constraints = [models.UniqueConstraint(fields=["entry"], name="snapshot_opt_out_once")]

    def __str__(self) -> str:
        return f"opt-out of entry #{self.entry_id} ({self.reason_code})"


class DatasetLicence(models.Model):
    """A vendor's training licence on one snapshot, with the price paid and the signed receipt."""

    licence_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="dataset_licences"
    )
    snapshot = models.ForeignKey(Snapshot, on_delete=models.PROTECT, related_name="licences")
    purchased_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    price_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    territory = models.CharField(max_length=2, blank=True)
    receipt = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "snapshot"], name="dataset_licence_once"),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="dataset_licence_price"),
        ]

    def __str__(self) -> str:
        return f"licence {self.licence_id} on snapshot #{self.snapshot_id}"


class SaleShare(models.Model):
    """How one licence's price was divided: one row per work (recorded as revenue for the royalties
    engine to split by the work's split sheet and lineage) and one for the curator (work is null)."""

    licence = models.ForeignKey(DatasetLicence, on_delete=models.PROTECT, related_name="shares")
    work = models.ForeignKey(
        "catalog.Work", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    contributor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    item_count = models.PositiveIntegerField(default=0)
    weight = models.PositiveBigIntegerField(default=0)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    revenue_item = models.ForeignKey(
        "royalties.RevenueItem", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["licence_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["licence", "work"], name="sale_share_once_per_work"),
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="sale_share_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_minor} {self.currency} of licence #{self.licence_id}"


class DownloadLog(models.Model):
    """Every download through a signed link (and every refused attempt, with the reason)."""

    licence = models.ForeignKey(DatasetLicence, on_delete=models.PROTECT, related_name="downloads")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    part = models.CharField(max_length=40)  # "manifest" or "shard-00000"
    size_bytes = models.BigIntegerField(default=0)
    refused = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.part} of licence #{self.licence_id}"


class DatasetNotice(models.Model):
    """A message to a contributor about their items (a duplicate collapsed, an item left out)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="notices")
    item = models.ForeignKey(DatasetItem, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} for user #{self.user_id}"

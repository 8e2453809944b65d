"""Works, their files, who owns them, the terms they are offered under, and what derives from what.

Split sheets, offers and grants are append-only in spirit: a change publishes a new version, and
everything that points at an old version (grants, earnings) keeps pointing at it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from common.money import BPS_WHOLE

MAX_PARENTS = 16


class WorkKind(models.TextChoices):
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    VOICE = "voice", "Voice"
    STYLE = "style", "Style"
    ARTICLE = "article", "Article"
    LYRICS = "lyrics", "Lyrics"
    BOOK = "book", "Book"
    TEXT_COLLECTION = "text-collection", "Text collection"


COLLECTION_KINDS = {WorkKind.STYLE, WorkKind.VOICE}
# Works whose files are text; a text collection holds text works as members and has no file of its own.
# (Values, not members: an enum member hashes by its name, so a plain string would not be found in a set
# of members.)
TEXT_KINDS: frozenset[str] = frozenset({WorkKind.ARTICLE.value, WorkKind.LYRICS.value, WorkKind.BOOK.value})


class WorkStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    WITHDRAWN = "withdrawn", "Withdrawn"
    BLOCKED = "blocked", "Blocked by a claim"


class Work(models.Model):
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=WorkKind.choices)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=WorkStatus.choices, default=WorkStatus.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="works")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # A style or a voice is a collection of member works (the artworks that make the style, the recordings
    # that make the voice).
    members = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="collections")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_by", "status"]), models.Index(fields=["kind", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=WorkKind.values), name="work_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=WorkStatus.values), name="work_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.title} (#{self.pk})"


class Blob(models.Model):
    """Stored bytes, addressed by their SHA-256: the same content is kept once however often it arrives."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size_bytes = models.BigIntegerField()
    media_type = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    storage_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} {self.media_type}"


class FingerprintStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Asset(models.Model):
    work = models.ForeignKey(Work, on_delete=models.CASCADE, related_name="assets")
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="assets")
    filename = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    fingerprint_status = models.CharField(
        max_length=16, choices=FingerprintStatus.choices, default=FingerprintStatus.PENDING
    )
    fingerprint_progress = models.PositiveSmallIntegerField(default=0)
    fingerprint_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["work", "blob"], name="asset_once_per_work")]

    def __str__(self) -> str:
        return f"{self.filename} (work #{self.work_id})"


class TextVersion(models.Model):
    """One version of a text work: the normalised text of an uploaded file (the original is the asset).

    Every upload of different text to a text work adds the next version; the newest is what retrieval
    sells, and every version is fingerprinted, so a quote of an old version still traces to the work.
    Character offsets in traces and receipts refer to `text`.
    """

    work = models.ForeignKey(Work, on_delete=models.CASCADE, related_name="text_versions")
    version = models.PositiveIntegerField()
    asset = models.OneToOneField(Asset, on_delete=models.CASCADE, related_name="text_version")
    text = models.TextField()
    characters = models.PositiveIntegerField()
    words = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["work_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["work", "version"], name="text_version_unique")]

    def __str__(self) -> str:
        return f"Text v{self.version} of work #{self.work_id}"


class SplitSheetStatus(models.TextChoices):
    PENDING = "pending", "Waiting for co-owners"
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Superseded"
    CANCELLED = "cancelled", "Cancelled"


class SplitSheet(models.Model):
    """Who owns a work, in basis points summing to 10,000. Each change is a new version."""

    work = models.ForeignKey(Work, on_delete=models.CASCADE, related_name="split_sheets")
    version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=SplitSheetStatus.choices, default=SplitSheetStatus.PENDING
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["work_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["work", "version"], name="split_sheet_version_unique"),
            models.UniqueConstraint(
                fields=["work"], condition=Q(status="active"), name="split_sheet_one_active_per_work"
            ),
        ]

    def __str__(self) -> str:
        return f"Split sheet v{self.version} of work #{self.work_id} ({self.status})"


class SplitShare(models.Model):
    sheet = models.ForeignKey(SplitSheet, on_delete=models.CASCADE, related_name="shares")
    email = models.EmailField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="split_shares"
    )
    share_bps = models.PositiveIntegerField()
    # How the proposer names this owner and what they did (DistroKid-style rows): shown to the co-owners.
    name = models.CharField(max_length=120, blank=True)
    role = models.CharField(max_length=60, blank=True)
    invite_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    invited_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-share_bps", "id"]
        constraints = [
            models.UniqueConstraint(fields=["sheet", "email"], name="split_share_email_once"),
            models.CheckConstraint(
                condition=Q(share_bps__gt=0, share_bps__lte=BPS_WHOLE), name="split_share_bps"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email}: {self.share_bps} bps"


class UseClass(models.TextChoices):
    AI_TRAIN = "ai-train", "AI training"
    AI_GENERATE = "ai-generate", "AI generation"
    STYLE = "style", "Style"
    VOICE = "voice", "Voice"
    INDEX = "index", "Indexing"
    DERIVATIVE = "derivative", "Derivative works"
    # Text retrieval, priced per 1,000 tokens: snippets for a search index, text placed in a model's
    # context, and the full text for training (ai-train).
    AI_INDEX = "ai-index", "AI index snippets"
    AI_INPUT = "ai-input", "AI input (retrieval-augmented answers)"


# The uses POST /api/v1/retrieve sells, priced per 1,000 tokens.
RETRIEVAL_USES = [UseClass.AI_INDEX, UseClass.AI_INPUT, UseClass.AI_TRAIN]


class OfferStatus(models.TextChoices):
    CURRENT = "current", "Current"
    SUPERSEDED = "superseded", "Superseded"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Offer(models.Model):
    """One immutable version of a work's licence terms. Editing terms publishes the next version."""

    work = models.ForeignKey(Work, on_delete=models.CASCADE, related_name="offers")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=OfferStatus.choices, default=OfferStatus.CURRENT)
    currency = models.CharField(max_length=3)
    commercial_use = models.BooleanField(default=False)
    attribution_required = models.BooleanField(default=True)
    derivative_share_bps = models.PositiveIntegerField(default=0)
    derivative_approval_required = models.BooleanField(default=False)
    licence_fee_minor = models.BigIntegerField(default=0)
    # Empty means worldwide; otherwise ISO 3166-1 alpha-2 codes.
    territories = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Accesses allowed per grant; null means unlimited.
    quota = models.PositiveBigIntegerField(null=True, blank=True)
    platform_fee_bps = models.PositiveIntegerField(null=True, blank=True)
    # Limits the studio enforces on every job under these terms (a voice's owner sets them on a voice
    # offer): whether a fan may declare explicit lyrics, the longest vocal (any audio input) in seconds
    # (null: no cap), and whether each release of a derivative waits for the owner's approval.
    explicit_content_allowed = models.BooleanField(default=True)
    max_vocal_seconds = models.PositiveIntegerField(null=True, blank=True)
    release_approval_required = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["work_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["work", "version"], name="offer_version_unique"),
            models.UniqueConstraint(fields=["work"], condition=Q(status="current"), name="offer_one_current"),
            models.CheckConstraint(condition=Q(derivative_share_bps__lte=BPS_WHOLE), name="offer_share_bps"),
            models.CheckConstraint(condition=Q(licence_fee_minor__gte=0), name="offer_fee_non_negative"),
            models.CheckConstraint(
                condition=Q(platform_fee_bps__isnull=True) | Q(platform_fee_bps__lte=BPS_WHOLE),
                name="offer_platform_fee_bps",
            ),
            models.CheckConstraint(
                condition=Q(max_vocal_seconds__isnull=True) | Q(max_vocal_seconds__gt=0),
                name="offer_max_vocal_seconds_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Offer v{self.version} for work #{self.work_id}"


class OfferUse(models.Model):
    """A use class the offer allows, with its per-access price (zero for free or non-metered uses) and,
    for text retrieval, its price per 1,000 tokens."""

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="uses")
    use_class = models.CharField(max_length=16, choices=UseClass.choices)
    price_minor = models.BigIntegerField(default=0)
    price_per_1k_tokens_minor = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["use_class"]
        constraints = [
            models.UniqueConstraint(fields=["offer", "use_class"], name="offer_use_once"),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="offer_use_price_non_negative"),
            models.CheckConstraint(
                condition=Q(price_per_1k_tokens_minor__gte=0), name="offer_use_token_price_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_class} at {self.price_minor}"


class GrantStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Waiting for the owner's approval"
    PENDING_PAYMENT = "pending_payment", "Waiting for the licence fee"
    ACTIVE = "active", "Active"
    REJECTED = "rejected", "Rejected"
    REVOKED = "revoked", "Revoked"
    SUSPENDED = "suspended", "Suspended while a claim blocks it"


# A grant is active only once its licence fee is paid: a grant with a fee waits in PENDING_PAYMENT until
# the royalties licence service records the fee and activates it in the same database transaction.
OPEN_GRANT_STATUSES = [GrantStatus.PENDING_APPROVAL, GrantStatus.PENDING_PAYMENT, GrantStatus.ACTIVE]


class Grant(models.Model):
    """A licensee's acceptance of one offer version, with the fee owed under it."""

    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="grants")
    licensee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants")
    organisation = models.ForeignKey(
        "accounts.Organisation", null=True, blank=True, on_delete=models.PROTECT, related_name="grants"
    )
    status = models.CharField(max_length=20, choices=GrantStatus.choices)
    fee_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    accesses_used = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["offer", "licensee"],
                condition=Q(status__in=["pending_approval", "pending_payment", "active"]),
                name="grant_one_open_per_offer_and_licensee",
            ),
            models.CheckConstraint(condition=Q(fee_minor__gte=0), name="grant_fee_non_negative"),
        ]

    def __str__(self) -> str:
        return f"Grant #{self.pk} on offer #{self.offer_id} ({self.status})"


class WorkParent(models.Model):
    """An edge of the derivative graph: `child` derives from `parent` under `grant`.

    share_bps is copied from the grant's offer when the edge is made: the parent's cut of the child's
    revenue. The parent passes on its own upstream shares from what it receives.
    """

    child = models.ForeignKey(Work, on_delete=models.CASCADE, related_name="parent_links")
    parent = models.ForeignKey(Work, on_delete=models.PROTECT, related_name="child_links")
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="derivative_links")
    share_bps = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["child", "parent"], name="work_parent_once"),
            models.CheckConstraint(condition=~Q(child=models.F("parent")), name="work_parent_not_self"),
            models.CheckConstraint(condition=Q(share_bps__lte=BPS_WHOLE), name="work_parent_share_bps"),
        ]

    def __str__(self) -> str:
        return f"#{self.child_id} derives from #{self.parent_id} ({self.share_bps} bps)"


class ClaimStatus(models.TextChoices):
    OPEN = "open", "Waiting for the owner's decision"
    DECIDED = "decided", "Decided by the owner"
    DISPUTED = "disputed", "Disputed"
    RESOLVED = "resolved", "Resolved by the operator"


class ClaimDecision(models.TextChoices):
    MONETIZE = "monetize", "Monetize: the item's revenue goes to the owners"
    TRACK = "track", "Track: keep watching"
    BLOCK = "block", "Block: the item must come down"


class ClaimCharge(models.TextChoices):
    """Where the money of a monetized vendor output stands."""

    OWED = "owed", "Owed: the vendor's balance was short; charged when it is topped up"
    HELD = "held", "Held in escrow until the claim is final"
    PAID = "paid", "Paid to the claimed work's owners"
    RETURNED = "returned", "Returned to the vendor: the claim was dismissed or withdrawn"


class ClaimResolution(models.TextChoices):
    UPHELD = "upheld", "The owner's decision stands"
    DISMISSED = "dismissed", "The claim is dismissed"


class PartnerUpload(models.Model):
    """Media a partner platform (a streaming or UGC site) hosts, submitted for a verdict: which registered
    works it matches, and whether a licence covers each. Known by the partner's own reference."""

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="partner_uploads"
    )
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=200)
    # The Tribute account the partner says uploaded it, whose licences count beside the partner's own.
    licensee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sha256 = models.CharField(max_length=64)
    # The file itself is kept only when a claim opens on it (the claimed work's owner sees what copies it).
    blob = models.ForeignKey(
        Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="partner_uploads"
    )
    verdict = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "reference"], name="partner_upload_reference_once"
            )
        ]

    def __str__(self) -> str:
        return f"Partner upload {self.reference!r} of organisation #{self.organisation_id}"


class PartnerWebhook(models.Model):
    """Where a partner receives claim events about its uploads, signed with `secret` (HMAC-SHA256)."""

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.CASCADE, related_name="partner_webhooks"
    )
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=64)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Webhook #{self.pk} of organisation #{self.organisation_id}"


class WebhookEvent(models.Model):
    """One event for one endpoint, written in the transaction of the change it reports and delivered
    afterwards, with retries: the receiver knows a redelivery by its id."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be delivered"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Given up after every retry"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(PartnerWebhook, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"


class Watch(models.Model):
    """A creator watches a vendor's published feed of outputs (a list of file URLs) for copies of their
    works; the scan job fetches each new file once, and a copy no licence covers opens a claim."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watches")
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.CASCADE, related_name="watched_by"
    )
    feed_url = models.URLField(max_length=500)
    active = models.BooleanField(default=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Watch #{self.pk} of {self.feed_url}"


class WatchItem(models.Model):
    """One file URL of a watched feed, fetched and compared once."""

    watch = models.ForeignKey(Watch, on_delete=models.CASCADE, related_name="items")
    url = models.URLField(max_length=2000)
    sha256 = models.CharField(max_length=64, blank=True)
    matched_works = models.JSONField(default=list)
    error = models.CharField(max_length=300, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["watch", "url"], name="watch_item_once")]

    def __str__(self) -> str:
        return self.url


class Output(models.Model):
    """Media an AI vendor registered as generated by its systems, with the access receipts it names."""

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="outputs"
    )
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="outputs")
    filename = models.CharField(max_length=255)
    claimed_receipts = models.JSONField(default=list)
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Output #{self.pk} of organisation #{self.organisation_id}"


class Claim(models.Model):
    """Media someone registered matches a work they hold no covering grant for."""

    work = models.ForeignKey(Work, on_delete=models.PROTECT, related_name="claims")
    respondent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="claims_against"
    )
    subject_asset = models.ForeignKey(
        Asset, null=True, blank=True, on_delete=models.PROTECT, related_name="claims"
    )
    subject_output = models.ForeignKey(
        Output, null=True, blank=True, on_delete=models.PROTECT, related_name="claims"
    )
    subject_partner_upload = models.ForeignKey(
        PartnerUpload, null=True, blank=True, on_delete=models.PROTECT, related_name="claims"
    )
    # The work the subject asset belongs to (set on save): settlement holds that work's revenue by it.
    subject_work = models.ForeignKey(
        Work, null=True, blank=True, on_delete=models.PROTECT, related_name="claims_as_subject"
    )
    subject_sha256 = models.CharField(max_length=64)
    # The claimed work's file that matched: the only file of that work the respondent may preview.
    matched_asset = models.ForeignKey(
        Asset, null=True, blank=True, on_delete=models.PROTECT, related_name="claims_matched"
    )
    match_kind = models.CharField(max_length=16)
    score = models.FloatField()
    confidence = models.FloatField()
    # Where the match is (region, mirrored, offset_s, time_scale, overlap), and who filed a claim by hand.
    evidence = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ClaimStatus.choices, default=ClaimStatus.OPEN)
    decision = models.CharField(max_length=16, choices=ClaimDecision.choices, blank=True)
    resolution = models.CharField(max_length=16, choices=ClaimResolution.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    appealed = models.BooleanField(default=False)  # a resolution may be appealed once
    # A monetize decision on a vendor's output charges the vendor for the use it made (royalties.claims).
    charge = models.CharField(max_length=16, choices=ClaimCharge.choices, blank=True)
    charge_use = models.CharField(max_length=16, blank=True)
    charge_minor = models.BigIntegerField(null=True, blank=True)
    charge_currency = models.CharField(max_length=3, blank=True)
    # A block decision on an uploaded work: the work's status before the block, restored when it is lifted.
    blocked_status = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["work", "subject_sha256"], name="claim_once_per_match"),
            models.CheckConstraint(
                condition=Q(charge_minor__isnull=True) | Q(charge_minor__gt=0), name="claim_charge_positive"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Claim #{self.pk} on work #{self.work_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.subject_asset_id is not None and self.subject_work_id is None:
            self.subject_work_id = (
                Asset.objects.filter(pk=self.subject_asset_id).values_list("work_id", flat=True).get()
            )
        super().save(*args, **kwargs)


class ClaimEvent(models.Model):
    """Every state change of a claim, with who made it and what they said. Append-only."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        DECIDED = "decided", "Decided"
        DISPUTED = "disputed", "Disputed"
        RESOLVED = "resolved", "Resolved"
        APPEALED = "appealed", "Appealed"
        BLOCKED = "blocked", "Block in force"
        UNBLOCKED = "unblocked", "Block lifted"
        CHARGED = "charged", "Money moved"

    claim = models.ForeignKey(Claim, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    decision = models.CharField(max_length=16, blank=True)
    statement = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} on claim #{self.claim_id}"


class GrantsEnd(models.TextChoices):
    TERM_END = "term_end", "At the end of each licence's paid term"
    NOW = "now", "At once (the terms allow it)"


class ConsentWithdrawal(models.Model):
    """A creator no longer consents to one use of a work. While it stands (`restored_at` empty) no new
    access for that use is granted, by any route; licences already paid for keep the use until the end of
    their paid term, or lose it at once when `grants_end` says so."""

    work = models.ForeignKey(Work, on_delete=models.CASCADE, related_name="consent_withdrawals")
    use_class = models.CharField(max_length=16, choices=UseClass.choices)
    grants_end = models.CharField(max_length=16, choices=GrantsEnd.choices, default=GrantsEnd.TERM_END)
    reason = models.CharField(max_length=300, blank=True)
    withdrawn_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    restored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["work", "use_class"],
                condition=Q(restored_at__isnull=True),
                name="consent_withdrawn_once_per_use",
            ),
            models.CheckConstraint(
                condition=Q(grants_end__in=GrantsEnd.values), name="consent_grants_end_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_class} withdrawn from work #{self.work_id}"


class LicenseeNotice(models.Model):
    """What a licensee was told about a change to their licence (a consent withdrawn, a grant revoked).
    Kept as a row: there is no licensee webhook to deliver it, so the licensee reads it from the API."""

    class Kind(models.TextChoices):
        CONSENT_WITHDRAWN = "consent_withdrawn", "Consent withdrawn for a use"
        GRANT_REVOKED = "grant_revoked", "Licence revoked"

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    use_class = models.CharField(max_length=16, blank=True)
    message = models.CharField(max_length=500)
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} notice on grant #{self.grant_id}"

"""Metered access: one row per paid (or free) use, with the response it was answered with."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from catalog.models import UseClass

METERED_USES = [UseClass.AI_TRAIN, UseClass.AI_GENERATE, UseClass.STYLE, UseClass.VOICE, UseClass.INDEX]


class AccessEvent(models.Model):
    """A granted access. Unique per organisation and Idempotency-Key; `response_body` is replayed byte
    for byte when the same request comes again.

    The hot path inserts one of these per access, and every index is one more page written per insert, so
    the foreign keys carry none of their own: the organisation's and the work's are served by the indexes
    below; grants, offers and keys are never looked up from here (grants and offers cannot be deleted
    while accesses name them, and keys are revoked, not deleted).

    Only the grant is a foreign key the database enforces. The organisation, work and offer are the
    grant's own and the key is the caller's, copied by the charge itself, and they are kept for the usage
    queries. On PostgreSQL each enforced reference took a shared lock on its parent row; every access of a
    vendor names the same organisation, key and works, so those locks became multixacts, and dropping the
    four took 0.2 to 0.4 ms of CPU off each access. Deleting a parent goes through Django, which still
    applies PROTECT and SET_NULL; no code deletes them with raw SQL.
    """

    access_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation",
        on_delete=models.PROTECT,
        related_name="accesses",
        db_index=False,
        db_constraint=False,
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        on_delete=models.SET_NULL,
        related_name="accesses",
        db_index=False,
        db_constraint=False,
    )
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    work = models.ForeignKey(
        "catalog.Work",
        on_delete=models.PROTECT,
        related_name="accesses",
        db_index=False,
        db_constraint=False,
    )
    offer = models.ForeignKey(
        "catalog.Offer",
        on_delete=models.PROTECT,
        related_name="accesses",
        db_index=False,
        db_constraint=False,
    )
    grant = models.ForeignKey(
        "catalog.Grant", on_delete=models.PROTECT, related_name="accesses", db_index=False
    )
    use_class = models.CharField(max_length=16)
    territory = models.CharField(max_length=2)
    price_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    paid_by_x402 = models.BooleanField(default=False)
    response_body = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "idempotency_key"], name="access_once_per_key"),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="access_price_non_negative"),
        ]
        indexes = [
            models.Index(fields=["organisation", "created_at"]),
            models.Index(fields=["work", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"access {self.access_id} {self.use_class} of work #{self.work_id}"


class AccessRefund(models.Model):
    """An access taken back because what it paid for was never delivered (a studio job that failed after
    its charge), once per access. Its price went back to the payer through the ledger (`journal`; none for
    a free use), and the grant's quota use and the month's spend came back with it. The access event stays
    as it was; replaying its Idempotency-Key is refused from then on."""

    event = models.OneToOneField(AccessEvent, on_delete=models.PROTECT, related_name="refund")
    journal = models.OneToOneField(
        "royalties.JournalTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"refund of access event #{self.event_id}"


class SpendCap(models.Model):
    """A monthly ceiling on what an organisation (or one of its API keys) may spend, per currency.

    `spent_minor` counts the month named by `period`; the first charge of a new month starts it again.
    Both are moved by one conditional UPDATE, so concurrent accesses cannot overshoot the cap.
    """

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.CASCADE, related_name="spend_caps"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="spend_caps"
    )
    currency = models.CharField(max_length=3)
    cap_minor = models.BigIntegerField()
    period = models.CharField(max_length=7, default="")  # "2026-11"
    spent_minor = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "currency"],
                condition=Q(api_key__isnull=True),
                name="spend_cap_once_per_org",
            ),
            models.UniqueConstraint(
                fields=["api_key", "currency"],
                condition=Q(api_key__isnull=False),
                name="spend_cap_once_per_key",
            ),
            models.CheckConstraint(condition=Q(cap_minor__gte=0), name="spend_cap_non_negative"),
            models.CheckConstraint(
                condition=Q(spent_minor__lte=models.F("cap_minor")), name="spend_cap_not_exceeded"
            ),
        ]

    def __str__(self) -> str:
        scope = f"key #{self.api_key_id}" if self.api_key_id else f"organisation #{self.organisation_id}"
        return f"{scope}: {self.cap_minor} {self.currency} a month"


class X402PaymentStatus(models.TextChoices):
    RECORDED = "recorded", "Recorded, not yet settled"
    SETTLED = "settled", "Settled on chain, waiting for confirmations"
    CONFIRMED = "confirmed", "Confirmed and credited"
    FAILED = "failed", "Refused by the facilitator or the chain"


class X402Payment(models.Model):
    """An x402 payment, written BEFORE the facilitator is asked to settle it (write-ahead): the signed
    authorization, payer, amount and nonce are on record whatever happens next. One row per
    authorization (payer and nonce).

    recorded -> settled (the transaction hash is known) -> confirmed (CHAIN_CONFIRMATIONS deep: the
    vendor's prepaid balance is funded and the access charged, in one transaction), or failed. A row left
    `recorded` by a crash is recovered from the token's own record of used authorizations.
    """

    payer = models.CharField(max_length=42)
    nonce = models.CharField(max_length=66)
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.PROTECT, related_name="+")
    amount_base_units = models.DecimalField(max_digits=78, decimal_places=0)
    transaction_hash = models.CharField(max_length=66, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=X402PaymentStatus.choices, default=X402PaymentStatus.CONFIRMED
    )
    # The PaymentPayload and PaymentRequirements exactly as received and asked, to settle or recover.
    authorization = models.JSONField(default=dict)
    requirements = models.JSONField(default=dict)
    # What the payment buys: an access to this work for this use, charged under this Idempotency-Key.
    work = models.ForeignKey(
        "catalog.Work", null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    use_class = models.CharField(max_length=16, blank=True, default="")
    territory = models.CharField(max_length=2, blank=True, default="")
    price_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    # Or a text retrieval: the quote it pays, which pins the passages and their total.
    quote = models.ForeignKey(
        "access.RetrievalQuote", null=True, on_delete=models.PROTECT, related_name="payments"
    )
    # The chain head when the row was written: recovery looks for the authorization from there on.
    recorded_at_block = models.PositiveBigIntegerField(null=True)
    block_number = models.PositiveBigIntegerField(null=True)
    error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payer", "nonce"], name="x402_authorization_once"),
            models.CheckConstraint(
                condition=Q(status__in=X402PaymentStatus.values), name="x402_status_valid"
            ),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="x402_price_non_negative"),
            # A quote is paid once: a second authorization for it is refused while the first is live.
            models.UniqueConstraint(
                fields=["quote"],
                condition=Q(quote__isnull=False) & ~Q(status="failed"),
                name="x402_quote_paid_once",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"x402 {self.payer} {self.nonce[:10]} ({self.status})"


class Retrieval(models.Model):
    """One paid text retrieval (POST /api/v1/retrieve): the passages sold, their total and the receipt.

    Unique per organisation and Idempotency-Key; `response_body` is replayed byte for byte. Each passage
    is charged as its own revenue item (source key `retrieval:<id>:<n>`) in the same transaction.
    """

    retrieval_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="retrievals"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="retrievals"
    )
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    use_class = models.CharField(max_length=16)
    territory = models.CharField(max_length=2)
    currency = models.CharField(max_length=3)
    total_minor = models.BigIntegerField()
    total_tokens = models.PositiveIntegerField()
    tokenizer = models.CharField(max_length=120)
    paid_by_x402 = models.BooleanField(default=False)
    response_body = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "idempotency_key"], name="retrieval_once_per_key"
            ),
            models.CheckConstraint(condition=Q(total_minor__gte=0), name="retrieval_total_non_negative"),
        ]

    def __str__(self) -> str:
        return f"retrieval {self.retrieval_id} ({self.total_tokens} tokens)"


class RetrievalPassage(models.Model):
    """A passage sold by a retrieval: which work, version and characters, how many tokens, at what price."""

    retrieval = models.ForeignKey(Retrieval, on_delete=models.CASCADE, related_name="passages")
    position = models.PositiveSmallIntegerField()
    work = models.ForeignKey("catalog.Work", on_delete=models.PROTECT, related_name="retrieved_passages")
    offer = models.ForeignKey("catalog.Offer", on_delete=models.PROTECT, related_name="+")
    grant = models.ForeignKey("catalog.Grant", on_delete=models.PROTECT, related_name="+")
    text_version = models.ForeignKey("catalog.TextVersion", on_delete=models.PROTECT, related_name="+")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    tokens = models.PositiveIntegerField()
    price_per_1k_tokens_minor = models.BigIntegerField()
    price_minor = models.BigIntegerField()

    class Meta:
        ordering = ["retrieval_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["retrieval", "position"], name="retrieval_passage_once"),
            models.CheckConstraint(
                condition=Q(price_minor__gte=0), name="retrieval_passage_price_non_negative"
            ),
        ]
        indexes = [models.Index(fields=["work", "retrieval"])]

    def __str__(self) -> str:
        return f"passage {self.start}-{self.end} of work #{self.work_id}"


class RetrievalQuote(models.Model):
    """The passages a retrieval would sell and their total, pinned when the prepaid balance was short, so
    that an x402 payment pays exactly this total and buys exactly these passages (the selection is not
    made again when the payment arrives: the index may have changed since).

    One per organisation and Idempotency-Key. While it lasts (`expires_at`), the same request answers the
    same quote; once expired and unpaid, a fresh selection takes its place under a new `quote_id`.
    `passages` lists, in order, each passage's work, offer, grant, text version, character span, tokens,
    price and the SHA-256 of its text.
    """

    quote_id = models.UUIDField(default=uuid.uuid4, unique=True)
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    # The request itself, so the retrieval paid for is recorded under the same request.
    query = models.TextField()
    max_tokens = models.PositiveIntegerField()
    max_price_minor = models.BigIntegerField(null=True)
    use_class = models.CharField(max_length=16)
    territory = models.CharField(max_length=2)
    currency = models.CharField(max_length=3)
    total_minor = models.BigIntegerField()
    total_tokens = models.PositiveIntegerField()
    passages = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "idempotency_key"], name="retrieval_quote_once"),
            models.CheckConstraint(condition=Q(total_minor__gt=0), name="retrieval_quote_total_positive"),
        ]

    def __str__(self) -> str:
        return f"quote {self.quote_id} ({self.total_minor} {self.currency})"

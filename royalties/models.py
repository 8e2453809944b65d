"""The ledger: accounts, append-only journal transactions and their entries, the revenue waiting to be
settled, and the statements payees receive.

Sign convention: every account's balance is what it holds. An entry of +x adds x to its account, -x takes
x away; the entries of a transaction sum to zero per currency, so money only ever moves between accounts.
Money that arrived from outside (a card, a bank, a chain) comes out of a clearing account for that rail,
whose balance is therefore negative: it mirrors what the rail has handed us.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class AccountKind(models.TextChoices):
    VENDOR_PREPAID = "vendor_prepaid", "Vendor prepaid balance"
    PAYABLE = "payable", "Payable to a payee"
    PLATFORM_FEE = "platform_fee", "Platform fee revenue"
    CLEARING = "clearing", "External clearing (per rail and currency)"
    SUSPENSE = "suspense", "Suspense (owed to nobody we can pay yet)"


# Balances these accounts hold are owed to someone: they never go below what is held against them.
NON_NEGATIVE_KINDS = [AccountKind.VENDOR_PREPAID.value, AccountKind.PAYABLE.value, AccountKind.SUSPENSE.value]


class LedgerAccount(models.Model):
    """One account per owner, kind and currency, found by its `key` (e.g. `payable:user:7:USD`).

    `balance_minor` caches the sum of the account's entries (recomputed and compared by
    `manage.py check_ledger`). `held_minor` is what unsettled revenue has reserved on a payer's account:
    the available amount is `balance_minor - held_minor`, and the database refuses to let it go negative.
    """

    key = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=20, choices=AccountKind.choices)
    currency = models.CharField(max_length=3)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    organisation = models.ForeignKey(
        "accounts.Organisation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rail = models.CharField(max_length=40, blank=True)
    balance_minor = models.BigIntegerField(default=0)
    held_minor = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=AccountKind.values), name="ledger_account_kind_valid"
            ),
            models.CheckConstraint(condition=Q(held_minor__gte=0), name="ledger_account_held_non_negative"),
            models.CheckConstraint(
                condition=~Q(kind__in=NON_NEGATIVE_KINDS) | Q(balance_minor__gte=F("held_minor")),
                name="ledger_account_available_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.held_minor


class TransactionKind(models.TextChoices):
    FUNDING = "funding", "Funding of a prepaid balance"
    SETTLEMENT = "settlement", "Settlement of revenue"
    REVERSAL = "reversal", "Reversal"
    ADJUSTMENT = "adjustment", "Adjustment"


class JournalTransaction(models.Model):
    """A set of entries that sum to zero per currency. Never changed; corrected by a reversal."""

    kind = models.CharField(max_length=16, choices=TransactionKind.choices)
    key = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=TransactionKind.values), name="journal_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.key}"


class RevenueSource(models.TextChoices):
    ACCESS = "access", "Access fee"
    LICENCE_FEE = "licence_fee", "Licence fee"
    REPORTED = "reported", "Reported revenue"
    CLAIM = "claim", "Monetized claim"


class Entry(models.Model):
    """One leg of a transaction. `work` and `source` say what earned it, for statements."""

    transaction = models.ForeignKey(JournalTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    work = models.ForeignKey(
        "catalog.Work", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    source = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "entries"
        indexes = [models.Index(fields=["account", "transaction"])]
        constraints = [
            models.CheckConstraint(condition=~Q(amount_minor=0), name="entry_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_minor:+d} {self.currency} on account #{self.account_id}"


class RevenueItem(models.Model):
    """Money earned by a work and not yet split: one row per access, licence fee, reported sale or claim.

    `source_key` is unique (the source's own id: `access:<key>`, `report:<user>:<distributor>:<line>`), so
    the same revenue is recorded once; `settlement` is set exactly once, by the settlement that split it.
    """

    source = models.CharField(max_length=16, choices=RevenueSource.choices)
    source_key = models.CharField(max_length=200, unique=True)
    work = models.ForeignKey("catalog.Work", on_delete=models.PROTECT, related_name="revenue_items")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    fee_bps = models.PositiveIntegerField()
    arose_at = models.DateTimeField()
    payer = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="revenue_paid")
    settlement = models.ForeignKey(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="revenue_items"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(settlement__isnull=True), name="revenue_unsettled_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="revenue_amount_positive"),
            models.CheckConstraint(condition=Q(fee_bps__lte=10_000), name="revenue_fee_bps"),
            models.CheckConstraint(condition=Q(source__in=RevenueSource.values), name="revenue_source_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.source_key}: {self.amount_minor} {self.currency}"


class Statement(models.Model):
    """A payee's earnings in one currency over [period_start, period_end), chained by SHA-256 digest to
    their previous statement in that currency, so a payee can later prove a statement was not changed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="statements")
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    opening_minor = models.BigIntegerField()
    earned_minor = models.BigIntegerField()
    other_minor = models.BigIntegerField()
    closing_minor = models.BigIntegerField()
    previous = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="next_statement"
    )
    previous_digest = models.CharField(max_length=64, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_end", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "currency", "period_start"], name="statement_period_once"
            ),
            models.UniqueConstraint(
                fields=["user", "currency"], condition=Q(previous__isnull=True), name="statement_one_first"
            ),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="statement_period"),
        ]

    def __str__(self) -> str:
        return f"Statement #{self.pk} for user #{self.user_id} ({self.currency})"


class StatementLine(models.Model):
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="lines")
    work = models.ForeignKey(
        "catalog.Work", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    work_title = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, blank=True)
    kind = models.CharField(max_length=16)
    amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind}/{self.source} work #{self.work_id}: {self.amount_minor}"

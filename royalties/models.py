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
    IN_TRANSIT = "in_transit", "Payouts sent and not yet confirmed by the rail"
    SUSPENSE = "suspense", "Suspense (owed to nobody we can pay yet)"
    RECEIPTS = "receipts", "Money received from a named payer for its receivables"
    VENDOR_DEBT = "vendor_debt", "Owed by a vendor after a refund or chargeback of money it spent"
    CLAWBACK = "clawback", "Owed by a payee after earnings already paid out were reversed"
    ESCROW = "escrow", "A claim's charge, held until the claim is final"


# Balances these accounts hold are owed to someone: they never go below what is held against them.
NON_NEGATIVE_KINDS = [
    AccountKind.VENDOR_PREPAID.value,
    AccountKind.PAYABLE.value,
    AccountKind.SUSPENSE.value,
    AccountKind.IN_TRANSIT.value,
    AccountKind.RECEIPTS.value,
    AccountKind.ESCROW.value,
]
# Balances of these accounts are what someone owes the platform: zero or negative, never positive.
OWED_KINDS = [AccountKind.VENDOR_DEBT.value, AccountKind.CLAWBACK.value]


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
            models.CheckConstraint(
                condition=~Q(kind__in=OWED_KINDS) | Q(balance_minor__lte=0),
                name="ledger_account_owed_not_positive",
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
    PAYOUT = "payout", "Payout"
    REFUND = "refund", "Refund, chargeback or its return"
    CLAIM = "claim", "A claim's charge held in escrow, or returned"


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
    SALE = "sale", "Sale on Tribute"
    DATASET = "dataset", "Dataset licence"


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
    # Not enforced by the database, like the access event's work (see AccessEvent): one row per access.
    work = models.ForeignKey(
        "catalog.Work", on_delete=models.PROTECT, related_name="revenue_items", db_constraint=False
    )
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


class PayoutRail(models.TextChoices):
    STRIPE = "stripe", "Stripe Connect transfer"
    CHAIN = "chain", "On-chain stablecoin"
    MANUAL = "manual", "Manual (exported for the operator)"


class PayoutStatus(models.TextChoices):
    CREATED = "created", "Created"
    SUBMITTED = "submitted", "Submitted to the rail"
    CONFIRMED = "confirmed", "Confirmed"
    FAILED = "failed", "Failed (money back to payable)"
    RETURNED = "returned", "Returned by the rail (money back to payable)"


# The form of every payout period (royalties.payouts.period_of): a month `2026-11`, an ISO week `2026-W47`
# or a day `2026-11-21`. The services also insist on the configured kind and the exact spelling.
PERIOD_FORM = r"^[0-9]{4}-((0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?|W(0[1-9]|[1-4][0-9]|5[0-3]))$"


class Payout(models.Model):
    """One payment to one payee, in one currency, for one period: the unique constraint is the promise
    that a period is paid once. `key` is the id sent to the rail (Stripe Idempotency-Key, the chain's
    payout id), so a retry can never make a second payment."""

    key = models.CharField(max_length=80, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payouts")
    currency = models.CharField(max_length=3)
    period = models.CharField(max_length=16)
    amount_minor = models.BigIntegerField()
    rail = models.CharField(max_length=16, choices=PayoutRail.choices)
    destination = models.CharField(max_length=120, blank=True)
    status = models.CharField(max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.CREATED)
    external_id = models.CharField(max_length=120, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Chain rail: the batch of the latest attempt, and the chain head before the first attempt (where to
    # look for its payment after a crash).
    chain_batch = models.ForeignKey(
        "ChainBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="payouts"
    )
    chain_from_block = models.BigIntegerField(null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "currency", "period"], name="payout_once_per_period"),
            models.CheckConstraint(condition=Q(period__regex=PERIOD_FORM), name="payout_period_form"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(condition=Q(rail__in=PayoutRail.values), name="payout_rail_valid"),
            models.CheckConstraint(condition=Q(status__in=PayoutStatus.values), name="payout_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "rail"])]

    def __str__(self) -> str:
        return (
            f"Payout {self.key}: {self.amount_minor} {self.currency} to user #{self.user_id} ({self.status})"
        )


class WebhookEvent(models.Model):
    """An event a rail pushed to us, stored (after its signature was verified) before it is processed.
    The unique (provider, event_id) makes a redelivery a no-op; `processed_at` is set once."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=120)
    event_type = models.CharField(max_length=80)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_event_once"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type} {self.event_id}"


# Payout rails: chain batches, chain deposits, reconciliation -------------------------------------------


class ChainBatchStatus(models.TextChoices):
    PREPARED = "prepared", "Prepared (recorded before sending)"
    SENT = "sent", "Sent, waiting for its receipt"
    MINED = "mined", "Mined"
    REVERTED = "reverted", "Reverted (its payouts are sent again)"
    DROPPED = "dropped", "Dropped or replaced (its payouts are sent again)"
    FAILED = "failed", "Not sent (the chain refused before sending)"


class ChainBatch(models.Model):
    """One `batch_pay` transaction of the PayoutDistributor, recorded *before* it is sent.

    `batch_id` is derived from this row's id, so every attempt has its own; payouts keep their payout id
    (derived from the payout key) across attempts, and the contract pays a payout id at most once.
    `from_block` is the chain head just before sending: where to look for its events after a crash.
    """

    batch_id = models.CharField(max_length=66, unique=True)
    status = models.CharField(
        max_length=16, choices=ChainBatchStatus.choices, default=ChainBatchStatus.PREPARED
    )
    tx_hash = models.CharField(max_length=66, blank=True)
    nonce = models.BigIntegerField(null=True, blank=True)
    from_block = models.BigIntegerField()
    mined_block = models.BigIntegerField(null=True, blank=True)
    gas_used = models.BigIntegerField(null=True, blank=True)
    entries = models.PositiveIntegerField(default=0)
    total_base_units = models.DecimalField(max_digits=78, decimal_places=0, default=0)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "chain batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ChainBatchStatus.values), name="chain_batch_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Chain batch #{self.pk} ({self.status}) {self.tx_hash or ''}".rstrip()


class DepositAddress(models.Model):
    """A wallet a vendor pays its prepaid top-ups from. Registered only with a signature made by that
    wallet over our message naming the organisation, so nobody can claim another's deposits."""

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="deposit_addresses"
    )
    address = models.CharField(max_length=42, unique=True)  # checksummed
    verified_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["organisation_id", "address"]

    def __str__(self) -> str:
        return f"{self.address} (organisation #{self.organisation_id})"


class ChainDepositStatus(models.TextChoices):
    CREDITED = "credited", "Credited to the vendor's prepaid balance"
    SUSPENSE = "suspense", "Unknown sender: held in suspense for the operator"
    ASSIGNED = "assigned", "Moved from suspense to a vendor by the operator"
    SKIPPED = "skipped", "Not a deposit (already recorded by x402, or a mint)"


class ChainDeposit(models.Model):
    """One stablecoin Transfer to the platform's deposit address, recorded once per (tx hash, log index).

    `amount_base_units` is exactly what arrived (6 decimals); `amount_minor` is what the ledger credited
    (whole cents; the sub-cent remainder, if any, stays in `dust_base_units`)."""

    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.BigIntegerField()
    sender = models.CharField(max_length=42)
    receiver = models.CharField(max_length=42)
    token = models.CharField(max_length=42)
    amount_base_units = models.DecimalField(max_digits=78, decimal_places=0)
    amount_minor = models.BigIntegerField()
    dust_base_units = models.DecimalField(max_digits=78, decimal_places=0, default=0)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=16, choices=ChainDepositStatus.choices)
    organisation = models.ForeignKey(
        "accounts.Organisation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    journal = models.ForeignKey(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-block_number", "-log_index"]
        constraints = [
            models.UniqueConstraint(fields=["tx_hash", "log_index"], name="chain_deposit_once"),
            models.CheckConstraint(
                condition=Q(status__in=ChainDepositStatus.values), name="chain_deposit_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Deposit {self.tx_hash[:12]}…#{self.log_index} from {self.sender} ({self.status})"


class ChainCursor(models.Model):
    """The last block a chain watcher has read, per watcher name and contract."""

    name = models.CharField(max_length=120, unique=True)
    last_block = models.BigIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} at block {self.last_block}"


class ReconciliationRun(models.Model):
    """One comparison of our ledger with one rail's records for one period."""

    period = models.CharField(max_length=16)
    rail = models.CharField(max_length=16)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    ledger_records = models.PositiveIntegerField(default=0)
    rail_records = models.PositiveIntegerField(default=0)
    differences_found = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Reconciliation {self.rail} {self.period} #{self.pk}"


class DifferenceKind(models.TextChoices):
    MISSING_ON_RAIL = "missing_on_rail", "In our ledger, not on the rail"
    MISSING_IN_LEDGER = "missing_in_ledger", "On the rail, not in our ledger"
    DUPLICATE = "duplicate", "More than one rail record for one of ours"
    AMOUNT_MISMATCH = "amount_mismatch", "Amounts differ"
    OVERDUE = "overdue", "Receivable past its due date, no money matched"
    UNAPPLIED = "unapplied", "Money received from a payer, not matched to any receivable"


class ReconciliationDifference(models.Model):
    """One difference a reconciliation run found, kept for the operator until resolved."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="differences")
    rail = models.CharField(max_length=16)
    kind = models.CharField(max_length=20, choices=DifferenceKind.choices)
    record_kind = models.CharField(max_length=16)  # payout / funding
    reference = models.CharField(max_length=200)
    external_id = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    ledger_amount_minor = models.BigIntegerField(null=True, blank=True)
    rail_amount_minor = models.BigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["resolved_at", "rail"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=DifferenceKind.values), name="difference_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.record_kind} {self.reference}"


# Receivables, holdbacks, parked settlement ----------------------------------------------------------


class ReceivableStatus(models.TextChoices):
    OPEN = "open", "Open: reported, no money matched yet"
    MATCHED = "matched", "Matched: money received covers it; its revenue is settled like any other"


class Receivable(models.Model):
    """Revenue reported to us (a distributor's statement line) that a named payer owes: it earns nothing
    until money covering it arrives from that payer and is matched. Matching records its RevenueItem,
    paid from the payer's receipts account, so every credit it makes to a payee is money received.

    The payer is the distributor as named by the reporter; receivables and receipts are kept per
    (reporter, distributor, currency), so money one creator's distributor paid is never matched to
    another creator's reports. `split_at` decides which lineage and owners share it: the moment it was
    reported, unless an operator confirmed the earlier `sale_at` (`date_confirmed_by`)."""

    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    distributor = models.CharField(max_length=40)
    source = models.CharField(max_length=16)
    source_key = models.CharField(max_length=200, unique=True)
    work = models.ForeignKey("catalog.Work", on_delete=models.PROTECT, related_name="receivables")
    reported_work = models.ForeignKey(
        "catalog.Work", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    fee_bps = models.PositiveIntegerField()
    sale_at = models.DateTimeField()
    split_at = models.DateTimeField()
    date_confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=ReceivableStatus.choices, default=ReceivableStatus.OPEN)
    receipt = models.ForeignKey(
        JournalTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="receivables"
    )
    revenue = models.OneToOneField(
        RevenueItem, null=True, blank=True, on_delete=models.PROTECT, related_name="receivable"
    )
    matched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["reporter", "distributor", "currency", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="receivable_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=ReceivableStatus.values), name="receivable_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=ReceivableStatus.OPEN) | Q(revenue__isnull=False),
                name="receivable_matched_has_revenue",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_key}: {self.amount_minor} {self.currency} ({self.status})"


class Holdback(models.Model):
    """A share of a payee's new earnings kept on their payable (`held_minor`) until `release_at`, so a
    refund or chargeback in the dispute window is taken from it instead of from a later payout.
    `remaining_minor` falls when it is released or used to cover a clawback."""

    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="holdbacks")
    settlement = models.ForeignKey(JournalTransaction, on_delete=models.PROTECT, related_name="+")
    amount_minor = models.BigIntegerField()
    remaining_minor = models.BigIntegerField()
    release_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["release_at", "id"]
        indexes = [
            models.Index(fields=["release_at"], condition=Q(remaining_minor__gt=0), name="holdback_due_idx")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining_minor__gte=0) & Q(remaining_minor__lte=F("amount_minor")),
                name="holdback_remaining_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Holdback of {self.remaining_minor}/{self.amount_minor} on account #{self.account_id}"


class ParkedRevenue(models.Model):
    """A revenue item settlement could not settle (an amount that would overflow, a split that fails):
    set aside with its error so every other item settles, and shown to operators in the admin."""

    item = models.OneToOneField(RevenueItem, on_delete=models.PROTECT, related_name="parked")
    error = models.CharField(max_length=500)
    parked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-parked_at", "-id"]
        verbose_name_plural = "parked revenue"

    def __str__(self) -> str:
        return f"Parked revenue item #{self.item_id}: {self.error}"

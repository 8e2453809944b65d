from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from common import clock
from common.admin import ReadOnlyAdmin, ReadOnlyInline
from common.money import Money
from common.problems import ApiError
from royalties import payouts, reconcile, reports, reversal, settlement
from royalties.models import (
    ChainBatch,
    ChainCursor,
    ChainDeposit,
    DepositAddress,
    Entry,
    Holdback,
    JournalTransaction,
    LedgerAccount,
    ParkedRevenue,
    Payout,
    PayoutRail,
    PayoutStatus,
    Receivable,
    ReceivableStatus,
    ReconciliationDifference,
    ReconciliationRun,
    RevenueItem,
    Statement,
    StatementLine,
    WebhookEvent,
)


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = ("account", "amount_minor", "currency", "work", "source")
    raw_id_fields = ("account", "work")


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("key", "kind", "currency", "balance_minor", "held_minor", "created_at")
    list_filter = ("kind", "currency")
    search_fields = ("key",)


class ReasonActionForm(ActionForm):
    reason = forms.CharField(required=False, max_length=200, label="Reason")


def _operator(request: HttpRequest) -> str:
    return str(request.user.get_username())


@admin.register(JournalTransaction)
class JournalTransactionAdmin(ReadOnlyAdmin):
    """Transactions are never edited: a correction is a reversal, appended with the operator's reason."""

    list_display = ("id", "kind", "key", "memo", "created_at", "reverses")
    list_filter = ("kind",)
    search_fields = ("key", "memo")
    inlines = [EntryInline]
    action_form = ReasonActionForm
    actions = ["reverse"]

    @admin.action(description="Reverse selected transactions (give the reason above)")
    def reverse(self, request: HttpRequest, queryset: QuerySet[JournalTransaction]) -> None:
        reason = str(request.POST.get("reason", "")).strip()
        if not reason:
            self.message_user(request, "Give the reason for the reversal.", messages.ERROR)
            return
        done = 0
        for txn in queryset.order_by("id"):
            try:
                reversal.transaction_reverse(
                    transaction=txn, reason=f"{reason} (by {_operator(request)} in the admin)", clawback=True
                )
                done += 1
            except ApiError as error:
                self.message_user(request, f"#{txn.pk}: {error.detail}", messages.ERROR)
        self.message_user(request, f"{done} transaction(s) reversed.", messages.SUCCESS)


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "transaction", "account", "amount_minor", "currency", "work", "source")
    list_filter = ("currency", "source")
    search_fields = ("account__key",)
    list_select_related = ("transaction", "account", "work")


@admin.register(RevenueItem)
class RevenueItemAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "source",
        "source_key",
        "work",
        "amount_minor",
        "currency",
        "arose_at",
        "settlement",
    )
    list_filter = ("source", "currency")
    search_fields = ("source_key",)
    list_select_related = ("work", "settlement")


class ReferenceActionForm(ActionForm):
    reference = forms.CharField(required=False, max_length=150, label="Bank reference")


@admin.register(Receivable)
class ReceivableAdmin(ReadOnlyAdmin):
    """Reported revenue owed by a distributor. It earns nothing until money covering it is matched: the
    operator confirms a bank receipt (with the bank's reference) for the selected receivables."""

    list_display = (
        "id",
        "reporter",
        "distributor",
        "source_key",
        "work",
        "amount_minor",
        "currency",
        "sale_at",
        "split_at",
        "due_at",
        "status",
        "matched_at",
    )
    list_filter = ("status", "currency", "distributor")
    search_fields = ("source_key", "distributor", "reporter__username")
    list_select_related = ("reporter", "work")
    raw_id_fields = ("reporter", "work", "reported_work", "receipt", "revenue", "date_confirmed_by")
    action_form = ReferenceActionForm
    actions = ["confirm_bank_receipt", "confirm_sale_date"]

    @admin.action(description="Confirm the reported sale dates (split by the owners in force then)")
    def confirm_sale_date(self, request: HttpRequest, queryset: QuerySet[Receivable]) -> None:
        """The operator checked the distributor's statement: each selected open receivable is split by the
        lineage and owners in force on its reported sale date instead of the day it was reported."""
        operator = request.user
        if not isinstance(operator, User):
            return
        done = 0
        for receivable in queryset.filter(status=ReceivableStatus.OPEN).order_by("id"):
            try:
                reports.receivable_date_confirm(
                    receivable=receivable, operator=operator, sale_at=receivable.sale_at
                )
                done += 1
            except ApiError as error:
                self.message_user(request, f"{receivable.source_key}: {error.detail}", messages.ERROR)
        self.message_user(request, f"{done} sale date(s) confirmed.", messages.SUCCESS)

    @admin.action(
        description="Confirm a bank receipt covering the selected open receivables (reference above)"
    )
    def confirm_bank_receipt(self, request: HttpRequest, queryset: QuerySet[Receivable]) -> None:
        reference = str(request.POST.get("reference", "")).strip()
        if not reference:
            self.message_user(request, "Give the bank's reference of the payment.", messages.ERROR)
            return
        groups: dict[tuple[int, str, str], list[Receivable]] = defaultdict(list)
        for receivable in queryset.filter(status=ReceivableStatus.OPEN).select_related("reporter"):
            groups[(receivable.reporter_id, receivable.distributor, receivable.currency)].append(receivable)
        if not groups:
            self.message_user(request, "None of the selected receivables is open.", messages.WARNING)
            return
        if len(groups) > 1:
            self.message_user(
                request,
                "One bank payment covers one reporter's receivables from one distributor in one currency.",
                messages.ERROR,
            )
            return
        [(_, distributor, currency)] = groups
        [selected] = groups.values()
        try:
            result = reports.receipt_record(
                reporter=selected[0].reporter,
                distributor=distributor,
                amount=Money(sum(r.amount_minor for r in selected), currency),
                rail="bank",
                reference=reference,
                receivable_ids=[r.pk for r in selected],
            )
        except ApiError as error:
            self.message_user(request, str(error.detail), messages.ERROR)
            return
        self.message_user(
            request,
            f"Receipt {reference} recorded; {len(result.matched)} receivable(s) matched.",
            messages.SUCCESS,
        )


@admin.register(ParkedRevenue)
class ParkedRevenueAdmin(ReadOnlyAdmin):
    """Revenue settlement set aside with its error, so nothing else waited behind it."""

    list_display = ("item", "error", "parked_at")
    raw_id_fields = ("item",)
    actions = ["retry"]

    @admin.action(description="Retry settling the selected items")
    def retry(self, request: HttpRequest, queryset: QuerySet[ParkedRevenue]) -> None:
        items = settlement.parked_retry(parked_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{items} item(s) settled.", messages.SUCCESS)


@admin.register(Holdback)
class HoldbackAdmin(ReadOnlyAdmin):
    list_display = ("account", "amount_minor", "remaining_minor", "release_at", "settlement")
    raw_id_fields = ("account", "settlement")


class StatementLineInline(ReadOnlyInline):
    model = StatementLine
    fields = ("work", "work_title", "source", "kind", "amount_minor")


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "currency", "period_start", "period_end", "closing_minor", "digest")
    list_filter = ("currency",)
    search_fields = ("user__username", "digest")
    inlines = [StatementLineInline]


# Payouts -----------------------------------------------------------------------------------------------


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    """Payouts change only through their state machine: the actions below, the rails, the webhooks."""

    list_display = (
        "key",
        "user",
        "currency",
        "amount_minor",
        "period",
        "rail",
        "status",
        "external_id",
        "attempts",
        "last_error",
        "created_at",
    )
    list_filter = ("status", "rail", "currency", "period")
    search_fields = ("key", "user__username", "user__email", "external_id")
    list_select_related = ("user",)
    raw_id_fields = ("user", "chain_batch")
    actions = ["mark_paid", "mark_failed"]

    def _manual(self, request: HttpRequest, queryset: QuerySet[Payout]) -> list[Payout]:
        waiting = list(queryset.filter(rail=PayoutRail.MANUAL, status=PayoutStatus.CREATED))
        skipped = queryset.count() - len(waiting)
        if skipped:
            self.message_user(
                request,
                f"{skipped} payout(s) skipped: only manual payouts waiting can be marked.",
                messages.WARNING,
            )
        return waiting

    @admin.action(description="Mark selected manual payouts paid (reference: admin, operator, date)")
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        reference = f"admin:{request.user.get_username()}:{clock.now():%Y-%m-%d}"
        done = 0
        for payout in self._manual(request, queryset):
            try:
                payouts.manual_mark_paid(payout=payout, reference=reference)
                done += 1
            except ApiError as error:
                self.message_user(request, f"{payout.key}: {error.detail}", messages.ERROR)
        self.message_user(request, f"{done} payout(s) marked paid ({reference}).", messages.SUCCESS)

    @admin.action(description="Mark selected manual payouts failed (money back to the payee)")
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        done = 0
        for payout in self._manual(request, queryset):
            try:
                payouts.manual_mark_failed(
                    payout=payout, reason=f"marked failed in the admin by {request.user.get_username()}"
                )
                done += 1
            except ApiError as error:
                self.message_user(request, f"{payout.key}: {error.detail}", messages.ERROR)
        self.message_user(
            request, f"{done} payout(s) marked failed; the money is payable again.", messages.SUCCESS
        )

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ChainBatch)
class ChainBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "entries",
        "total_base_units",
        "tx_hash",
        "from_block",
        "mined_block",
        "gas_used",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("tx_hash", "batch_id")


@admin.register(DepositAddress)
class DepositAddressAdmin(ReadOnlyAdmin):
    list_display = ("address", "organisation", "verified_at", "created_by")
    search_fields = ("address", "organisation__name")
    list_select_related = ("organisation", "created_by")


@admin.register(ChainDeposit)
class ChainDepositAdmin(ReadOnlyAdmin):
    list_display = (
        "tx_hash",
        "log_index",
        "block_number",
        "sender",
        "amount_minor",
        "status",
        "organisation",
        "note",
    )
    list_filter = ("status",)
    search_fields = ("tx_hash", "sender")
    list_select_related = ("organisation",)


@admin.register(ChainCursor)
class ChainCursorAdmin(ReadOnlyAdmin):
    list_display = ("name", "last_block", "updated_at")


class DifferenceInline(ReadOnlyInline):
    model = ReconciliationDifference
    fields = (
        "kind",
        "record_kind",
        "reference",
        "external_id",
        "ledger_amount_minor",
        "rail_amount_minor",
        "resolved_at",
    )


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "rail",
        "period",
        "ledger_records",
        "rail_records",
        "differences_found",
        "error",
        "started_at",
    )
    list_filter = ("rail", "period")
    inlines = [DifferenceInline]


@admin.register(ReconciliationDifference)
class ReconciliationDifferenceAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "rail",
        "kind",
        "record_kind",
        "reference",
        "external_id",
        "currency",
        "ledger_amount_minor",
        "rail_amount_minor",
        "resolved_at",
    )
    list_filter = ("rail", "kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("reference", "external_id")
    actions = ["resolve"]

    @admin.action(description="Mark selected differences resolved")
    def resolve(self, request: HttpRequest, queryset: QuerySet[ReconciliationDifference]) -> None:
        user = request.user if request.user.is_authenticated else None
        for difference in queryset.filter(resolved_at__isnull=True):
            reconcile.difference_resolve(
                difference=difference,
                user=user,
                note=f"resolved in the admin by {request.user.get_username()}",
            )
        self.message_user(request, "Resolved.", messages.SUCCESS)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("provider", "event_type", "event_id", "received_at", "processed_at", "error")
    list_filter = ("provider", "event_type")
    search_fields = ("event_id",)

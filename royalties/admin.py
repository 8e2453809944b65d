from django.contrib import admin

from common.admin import ReadOnlyAdmin, ReadOnlyInline
from royalties.models import Entry, JournalTransaction, LedgerAccount, RevenueItem, Statement, StatementLine


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = ("account", "amount_minor", "currency", "work", "source")
    raw_id_fields = ("account", "work")


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("key", "kind", "currency", "balance_minor", "held_minor", "created_at")
    list_filter = ("kind", "currency")
    search_fields = ("key",)


@admin.register(JournalTransaction)
class JournalTransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "key", "memo", "created_at", "reverses")
    list_filter = ("kind",)
    search_fields = ("key", "memo")
    inlines = [EntryInline]


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


class StatementLineInline(ReadOnlyInline):
    model = StatementLine
    fields = ("work", "work_title", "source", "kind", "amount_minor")


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "currency", "period_start", "period_end", "closing_minor", "digest")
    list_filter = ("currency",)
    search_fields = ("user__username", "digest")
    inlines = [StatementLineInline]

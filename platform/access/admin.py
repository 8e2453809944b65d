from django.contrib import admin

from access.models import (
    AccessEvent,
    AccessRefund,
    Retrieval,
    RetrievalPassage,
    RetrievalQuote,
    SpendCap,
    X402Payment,
)
from common.admin import ReadOnlyAdmin


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyAdmin):
    list_display = ("access_id", "organisation", "work", "use_class", "price_minor", "currency", "created_at")
    list_filter = ("use_class", "currency", "paid_by_x402")
    search_fields = ("access_id", "idempotency_key")
    exclude = ("response_body",)


@admin.register(AccessRefund)
class AccessRefundAdmin(ReadOnlyAdmin):
    list_display = ("event", "journal", "reason", "created_at")
    raw_id_fields = ("event", "journal")


@admin.register(SpendCap)
class SpendCapAdmin(admin.ModelAdmin):
    list_display = ("organisation", "api_key", "currency", "cap_minor", "period", "spent_minor")
    readonly_fields = ("period", "spent_minor")
    raw_id_fields = ("organisation", "api_key")


@admin.register(X402Payment)
class X402PaymentAdmin(ReadOnlyAdmin):
    list_display = ("transaction_hash", "payer", "organisation", "amount_base_units", "created_at")
    search_fields = ("transaction_hash", "payer")
    raw_id_fields = ("quote",)


@admin.register(Retrieval)
class RetrievalAdmin(ReadOnlyAdmin):
    list_display = (
        "retrieval_id",
        "organisation",
        "use_class",
        "total_tokens",
        "total_minor",
        "currency",
        "created_at",
    )
    list_filter = ("use_class", "currency", "paid_by_x402")
    search_fields = ("retrieval_id", "idempotency_key")
    exclude = ("response_body",)


@admin.register(RetrievalQuote)
class RetrievalQuoteAdmin(ReadOnlyAdmin):
    list_display = ("quote_id", "organisation", "use_class", "total_minor", "currency", "expires_at")
    search_fields = ("quote_id", "idempotency_key")
    raw_id_fields = ("organisation", "api_key")


@admin.register(RetrievalPassage)
class RetrievalPassageAdmin(ReadOnlyAdmin):
    list_display = ("retrieval", "position", "work", "text_version", "start", "end", "tokens", "price_minor")
    raw_id_fields = ("retrieval", "work", "offer", "grant", "text_version")

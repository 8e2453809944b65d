from django.contrib import admin

from catalog.models import (
    Asset,
    Blob,
    Claim,
    ClaimEvent,
    ConsentWithdrawal,
    Grant,
    LicenseeNotice,
    Offer,
    OfferUse,
    Output,
    PartnerUpload,
    PartnerWebhook,
    SplitShare,
    SplitSheet,
    TextVersion,
    Watch,
    WatchItem,
    WebhookEvent,
    Work,
    WorkParent,
)
from common.admin import ReadOnlyAdmin, ReadOnlyInline


class AssetInline(ReadOnlyInline):
    model = Asset
    fields = ("filename", "blob", "fingerprint_status", "created_at")


class ParentInline(ReadOnlyInline):
    model = WorkParent
    fk_name = "child"
    fields = ("parent", "grant", "share_bps", "created_at")


@admin.register(Work)
class WorkAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "kind", "status", "created_by", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("title", "description", "created_by__username")
    raw_id_fields = ("created_by", "members")
    inlines = [AssetInline, ParentInline]


@admin.register(Blob)
class BlobAdmin(ReadOnlyAdmin):
    list_display = ("sha256", "media_type", "size_bytes", "width", "height", "duration_ms", "created_at")
    search_fields = ("sha256",)


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("id", "work", "filename", "fingerprint_status", "created_at")
    list_filter = ("fingerprint_status",)
    readonly_fields = ("work", "blob", "filename", "uploaded_by", "created_at")


@admin.register(TextVersion)
class TextVersionAdmin(ReadOnlyAdmin):
    list_display = ("work", "version", "characters", "words", "created_at")
    raw_id_fields = ("work", "asset")
    search_fields = ("work__title",)


class SplitShareInline(ReadOnlyInline):
    model = SplitShare
    fields = ("email", "user", "share_bps", "accepted_at")


@admin.register(SplitSheet)
class SplitSheetAdmin(ReadOnlyAdmin):
    list_display = ("work", "version", "status", "created_at", "activated_at")
    list_filter = ("status",)
    inlines = [SplitShareInline]


class OfferUseInline(ReadOnlyInline):
    model = OfferUse


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = (
        "work",
        "version",
        "status",
        "currency",
        "licence_fee_minor",
        "derivative_share_bps",
        "created_at",
    )
    list_filter = ("status", "currency")
    inlines = [OfferUseInline]


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "offer",
        "licensee",
        "organisation",
        "status",
        "fee_minor",
        "currency",
        "created_at",
    )
    list_filter = ("status",)


@admin.register(WorkParent)
class WorkParentAdmin(ReadOnlyAdmin):
    list_display = ("child", "parent", "grant", "share_bps", "created_at")


class ClaimEventInline(ReadOnlyInline):
    model = ClaimEvent
    fields = ("kind", "actor", "decision", "statement", "created_at")


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin):
    """Operators act on claims through the claims API (resolve); the history here is read-only."""

    list_display = (
        "id",
        "work",
        "respondent",
        "match_kind",
        "confidence",
        "status",
        "decision",
        "charge",
        "created_at",
    )
    list_filter = ("status", "decision", "charge", "match_kind")
    inlines = [ClaimEventInline]


@admin.register(Output)
class OutputAdmin(ReadOnlyAdmin):
    list_display = ("id", "organisation", "registered_by", "filename", "created_at")
    search_fields = ("blob__sha256", "filename")


@admin.register(ConsentWithdrawal)
class ConsentWithdrawalAdmin(ReadOnlyAdmin):
    """Withdrawn uses are the creator's to make and lift (the consent API); operators read them."""

    list_display = ("work", "use_class", "grants_end", "withdrawn_by", "created_at", "restored_at")
    list_filter = ("use_class", "grants_end")
    search_fields = ("work__title",)


@admin.register(LicenseeNotice)
class LicenseeNoticeAdmin(ReadOnlyAdmin):
    list_display = ("grant", "kind", "use_class", "effective_at", "created_at")
    list_filter = ("kind",)


@admin.register(PartnerUpload)
class PartnerUploadAdmin(ReadOnlyAdmin):
    list_display = ("id", "organisation", "reference", "sha256", "created_at")
    search_fields = ("reference", "sha256")


@admin.register(PartnerWebhook)
class PartnerWebhookAdmin(ReadOnlyAdmin):
    exclude = ("secret",)  # the signing secret is the partner's alone
    list_display = ("id", "organisation", "url", "active", "created_at")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """Deliveries and their retries: an operator sees what failed and why."""

    list_display = ("id", "endpoint", "kind", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status", "kind")


@admin.register(Watch)
class WatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "organisation", "feed_url", "active", "last_scanned_at", "last_error")


@admin.register(WatchItem)
class WatchItemAdmin(ReadOnlyAdmin):
    list_display = ("id", "watch", "url", "sha256", "error", "checked_at")

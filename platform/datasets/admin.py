from django.contrib import admin

from common.admin import ReadOnlyAdmin, ReadOnlyInline
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetLicence,
    DatasetNotice,
    DownloadLog,
    SaleShare,
    Snapshot,
    SnapshotItem,
    SnapshotOptOut,
    TrainingOptOut,
)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "title",
        "kind",
        "status",
        "curator",
        "pricing",
        "price_minor",
        "currency",
        "terms_version",
    )
    list_filter = ("kind", "status", "pricing", "weighting")
    search_fields = ("title", "description")
    raw_id_fields = ("curator", "created_by")
    readonly_fields = ("terms_version",)


@admin.register(DatasetItem)
class DatasetItemAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "dataset",
        "work",
        "contributor",
        "status",
        "reason_code",
        "duplicate_of",
        "weight",
        "tokens",
    )
    list_filter = ("status", "reason_code", "dataset__kind")
    search_fields = ("sha256", "text_sha256", "work__title")
    raw_id_fields = ("dataset", "work", "asset", "contributor", "duplicate_of", "text_version")


class SnapshotOptOutInline(ReadOnlyInline):
    model = SnapshotOptOut
    fields = ("entry", "reason_code", "recorded_at")


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "dataset",
        "number",
        "item_count",
        "total_tokens",
        "price_minor",
        "currency",
        "created_at",
    )
    search_fields = ("items_sha256",)
    inlines = [SnapshotOptOutInline]


# Snapshots and sales can hold thousands of rows: their items and shares get their own filtered lists.
@admin.register(SnapshotItem)
class SnapshotItemAdmin(ReadOnlyAdmin):
    list_display = ("snapshot", "position", "work", "blob", "offer_version", "weight", "tokens")
    search_fields = ("blob__sha256", "text_sha256", "work__title")
    list_select_related = ("work", "snapshot")


@admin.register(SaleShare)
class SaleShareAdmin(ReadOnlyAdmin):
    list_display = (
        "licence",
        "work",
        "contributor",
        "item_count",
        "amount_minor",
        "currency",
        "revenue_item",
    )
    list_select_related = ("licence", "work", "contributor")


@admin.register(DatasetLicence)
class DatasetLicenceAdmin(ReadOnlyAdmin):
    list_display = ("licence_id", "organisation", "snapshot", "price_minor", "currency", "created_at")
    search_fields = ("licence_id",)


@admin.register(DownloadLog)
class DownloadLogAdmin(ReadOnlyAdmin):
    list_display = ("licence", "part", "user", "size_bytes", "refused", "created_at")
    list_filter = ("refused", "part")


@admin.register(TrainingOptOut)
class TrainingOptOutAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "work", "set_by", "created_at")
    raw_id_fields = ("user", "work", "set_by")


@admin.register(DatasetNotice)
class DatasetNoticeAdmin(ReadOnlyAdmin):
    list_display = ("user", "dataset", "kind", "created_at")
    list_filter = ("kind",)

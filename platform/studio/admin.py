from django.contrib import admin

from studio.models import GenerationJob, Purchase, Release, ReleaseApproval, Wallet


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "organisation", "created_at")
    search_fields = ("user__username", "organisation__name")
    raw_id_fields = ("user", "organisation", "api_key")


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "fan", "generator", "status", "progress", "charged_minor", "currency", "created_at")
    list_filter = ("status", "generator")
    search_fields = ("title", "fan__username", "error")
    raw_id_fields = ("fan", "grant", "compose_grant", "result_work", "result_asset")
    readonly_fields = (
        "inputs",
        "details",
        "manifest",
        "receipts",
        "charges",
        "licence",
        "charged_at",
        "refunded_at",
    )


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ("id", "work", "released_by", "price_minor", "currency", "status", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("work", "released_by")


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):
    list_display = ("id", "release", "buyer", "amount_minor", "currency", "created_at")
    raw_id_fields = ("release", "buyer")


@admin.register(ReleaseApproval)
class ReleaseApprovalAdmin(admin.ModelAdmin):
    list_display = ("id", "release", "work", "owner", "status", "created_at", "decided_at")
    list_filter = ("status",)
    raw_id_fields = ("release", "work", "owner")

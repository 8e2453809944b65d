from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.forms import AdminLoginForm
from accounts.models import (
    ApiKey,
    Membership,
    Organisation,
    PayoutProfile,
    SecurityEvent,
    TotpDevice,
    User,
    WalletChallenge,
)
from accounts.services import api_key_revoke
from common.admin import ReadOnlyAdmin


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "email", "role", "display_name", "is_staff", "date_joined")
    list_filter = ("role", "is_staff", "is_active")
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        ("Tribute", {"fields": ("role", "display_name", "email_verified_at")}),
    )


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("name", "prefix", "user", "organisation", "scopes", "last_used_at", "revoked_at")
    search_fields = ("prefix", "name", "user__username")
    list_filter = ("revoked_at",)
    exclude = ("key_hash",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} keys.", messages.SUCCESS)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The revoke action needs change permission on the changelist; rows stay read-only in the form.
        return obj is None and bool(request.user.is_staff)


@admin.register(PayoutProfile)
class PayoutProfileAdmin(ReadOnlyAdmin):
    """Payout identities are proven by their owner (Stripe onboarding, a wallet signature), never typed in
    here, so an operator cannot redirect anyone's money by editing a row."""

    list_display = (
        "user",
        "rail",
        "stripe_account_id",
        "stripe_payouts_enabled",
        "stripe_details_submitted",
        "wallet_address",
        "wallet_verified_at",
        "updated_at",
    )
    list_filter = ("rail", "stripe_payouts_enabled")
    search_fields = ("user__username", "user__email", "stripe_account_id", "wallet_address")


@admin.register(WalletChallenge)
class WalletChallengeAdmin(ReadOnlyAdmin):
    list_display = ("user", "nonce", "created_at", "expires_at", "used_at", "address")
    search_fields = ("user__username", "nonce", "address")


# The admin's login asks for the authenticator code of accounts that have one (accounts.forms).
admin.site.login_form = AdminLoginForm


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    """Every account's security log, for operators (each user sees their own in the dashboard and API)."""

    list_display = ("created_at", "user", "kind", "ip_address")
    list_filter = ("kind",)
    search_fields = ("user__username", "user__email", "ip_address")
    raw_id_fields = ("user",)


@admin.register(TotpDevice)
class TotpDeviceAdmin(admin.ModelAdmin):
    """Operators may remove a lost authenticator (the person then enrols again); the secret is never shown."""

    list_display = ("user", "created_at", "confirmed_at")
    fields = ("user", "created_at", "confirmed_at")
    readonly_fields = ("user", "created_at", "confirmed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

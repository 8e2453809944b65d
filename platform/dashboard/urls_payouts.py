"""The dashboard pages for payouts."""

from django.urls import URLPattern, URLResolver, path

from dashboard.views import payout_settings, payouts

urlpatterns: list[URLPattern | URLResolver] = [
    path("payout-settings/", payout_settings.payout_settings, name="payout-settings"),
    path("payout-settings/rail/", payout_settings.payout_rail, name="payout-rail"),
    path("payout-settings/stripe/", payout_settings.payout_stripe_connect, name="payout-stripe-connect"),
    path(
        "payout-settings/stripe/refresh/", payout_settings.payout_stripe_refresh, name="payout-stripe-refresh"
    ),
    path(
        "payout-settings/wallet/challenge/",
        payout_settings.payout_wallet_challenge,
        name="payout-wallet-challenge",
    ),
    path("payout-settings/wallet/", payout_settings.payout_wallet_link, name="payout-wallet-link"),
    path("payout-settings/manual/", payout_settings.payout_manual, name="payout-manual"),
    path("balance/top-up/", payout_settings.topup_stripe, name="topup-stripe"),
    path("staff/payouts/", payouts.staff_payouts, name="staff-payouts"),
    path("staff/payouts/csv/", payouts.staff_payouts_csv, name="staff-payouts-csv"),
    path("staff/payouts/run/", payouts.staff_payout_run, name="staff-payout-run"),
    path("staff/reconciliation/", payouts.staff_reconciliation, name="staff-reconciliation"),
]

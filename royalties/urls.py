from django.urls import path

from royalties import apis, apis_claims, apis_licences, apis_payouts, apis_stripe

urlpatterns = [
    path("grants", apis_licences.GrantListCreateApi.as_view(), name="grants"),
    path("claims/<int:claim_id>/decide", apis_claims.ClaimDecideApi.as_view(), name="claim-decide"),
    path("claims/<int:claim_id>/resolve", apis_claims.ClaimResolveApi.as_view(), name="claim-resolve"),
    path("earnings", apis.EarningsApi.as_view(), name="earnings"),
    path("statements", apis.StatementListCreateApi.as_view(), name="statements"),
    path("statements/csv", apis.StatementCsvApi.as_view(), name="statement-csv"),
    path("revenue-reports", apis.RevenueReportCreateApi.as_view(), name="revenue-reports"),
    path("revenue-reports/csv", apis.RevenueReportUploadApi.as_view(), name="revenue-reports-csv"),
    path("webhooks/stripe", apis_stripe.StripeWebhookApi.as_view(), name="stripe-webhook"),
    path(
        "payout-profile/stripe-onboarding",
        apis_stripe.StripeOnboardingStartApi.as_view(),
        name="stripe-onboarding",
    ),
    path("topups", apis_stripe.TopUpCreateApi.as_view(), name="topups"),
    path("payouts", apis_payouts.PayoutListApi.as_view(), name="payouts"),
    path("deposit-addresses", apis_payouts.DepositAddressListCreateApi.as_view(), name="deposit-addresses"),
    path("deposit-addresses/message", apis_payouts.DepositMessageApi.as_view(), name="deposit-message"),
]

from django.urls import path

from catalog import apis, apis_consent, apis_partners, apis_tracing

urlpatterns = [
    path("works", apis.WorkListCreateApi.as_view(), name="works"),
    path("works/<int:work_id>", apis.WorkDetailApi.as_view(), name="work-detail"),
    path("works/<int:work_id>/withdraw", apis.WorkWithdrawApi.as_view(), name="work-withdraw"),
    path("works/<int:work_id>/members", apis.WorkMembersApi.as_view(), name="work-members"),
    path("works/<int:work_id>/assets", apis.AssetListCreateApi.as_view(), name="work-assets"),
    path(
        "works/<int:work_id>/split-sheets", apis.SplitSheetListCreateApi.as_view(), name="work-split-sheets"
    ),
    path("works/<int:work_id>/offers", apis.WorkOffersApi.as_view(), name="work-offers"),
    path("works/<int:work_id>/lineage", apis.WorkLineageApi.as_view(), name="work-lineage"),
    path("works/<int:work_id>/parents", apis.WorkParentsAddApi.as_view(), name="work-parents"),
    path("assets/<int:asset_id>", apis.AssetDetailApi.as_view(), name="asset-detail"),
    path("split-sheets/<int:sheet_id>", apis.SplitSheetDetailApi.as_view(), name="split-sheet-detail"),
    path("split-invitations/accept", apis.SplitInvitationAcceptApi.as_view(), name="split-invitation-accept"),
    path("offers", apis.OfferListApi.as_view(), name="offers"),
    path("offers/<int:offer_id>", apis.OfferDetailApi.as_view(), name="offer-detail"),
    path("offers/<int:offer_id>/rsl", apis.OfferRslApi.as_view(), name="offer-rsl"),
    # `grants` (list and accept) is served by royalties: accepting charges the licence fee.
    path("grants/<int:grant_id>", apis.GrantDetailApi.as_view(), name="grant-detail"),
    path("grants/<int:grant_id>/approve", apis.GrantDecideApi.as_view(approve=True), name="grant-approve"),
    path("grants/<int:grant_id>/reject", apis.GrantDecideApi.as_view(approve=False), name="grant-reject"),
    path("grants/<int:grant_id>/revoke", apis_consent.GrantRevokeApi.as_view(), name="grant-revoke"),
    path(
        "works/<int:work_id>/consent/withdraw",
        apis_consent.WorkConsentWithdrawApi.as_view(),
        name="work-consent-withdraw",
    ),
    path(
        "works/<int:work_id>/consent/restore",
        apis_consent.WorkConsentRestoreApi.as_view(),
        name="work-consent-restore",
    ),
    path("notices", apis_consent.NoticeListApi.as_view(), name="notices"),
    path("derivatives", apis.DerivativeListCreateApi.as_view(), name="derivatives"),
    path("trace", apis_tracing.TraceApi.as_view(), name="trace"),
    path("claims", apis_tracing.ClaimListApi.as_view(), name="claims"),
    path("claims/<int:claim_id>", apis_tracing.ClaimDetailApi.as_view(), name="claim-detail"),
    # `claims/<id>/decide` and `claims/<id>/resolve` are served by royalties: they move the claim's money.
    path("claims/<int:claim_id>/dispute", apis_tracing.ClaimDisputeApi.as_view(), name="claim-dispute"),
    path("partner/verdicts", apis_partners.PartnerVerdictListCreateApi.as_view(), name="partner-verdicts"),
    path("partner/webhooks", apis_partners.PartnerWebhookListCreateApi.as_view(), name="partner-webhooks"),
    path(
        "partner/webhooks/<int:webhook_id>",
        apis_partners.PartnerWebhookDetailApi.as_view(),
        name="partner-webhook-detail",
    ),
    path("watches", apis_partners.WatchListCreateApi.as_view(), name="watches"),
    path("watches/<int:watch_id>", apis_partners.WatchDetailApi.as_view(), name="watch-detail"),
    path("claims/<int:claim_id>/appeal", apis_tracing.ClaimAppealApi.as_view(), name="claim-appeal"),
]

from django.urls import include, path

from dashboard.views import claims, derivatives, home, keys, money, offers, operator, payouts, text, works

app_name = "dashboard"

urlpatterns = [
    path("", home.home, name="home"),
    path("works/", works.works, name="works"),
    path("works/new/", works.work_new, name="work-new"),
    path("works/<int:work_id>/", works.work_detail, name="work"),
    path("works/<int:work_id>/edit/", works.work_edit, name="work-edit"),
    path("works/<int:work_id>/assets/", works.asset_upload, name="asset-upload"),
    path("works/<int:work_id>/split-sheet/", works.split_edit, name="split-edit"),
    path("works/<int:work_id>/offers/new/", offers.offer_new, name="offer-new"),
    path("works/<int:work_id>/offers/preview/", offers.offer_preview, name="offer-preview"),
    path("assets/<int:asset_id>/status/", works.asset_status, name="asset-status"),
    path("assets/<int:asset_id>/file/", works.asset_file, name="asset-file"),
    path("invitations/", works.invitations, name="invitations"),
    path("invitations/accept/", works.invitation_accept, name="invitation-accept"),
    path(
        "invitations/<int:share_id>/accept/", works.invitation_accept_listed, name="invitation-accept-listed"
    ),
    path(
        "works/<int:work_id>/invitations/<int:share_id>/resend/",
        works.invitation_resend,
        name="invitation-resend",
    ),
    path(
        "works/<int:work_id>/invitations/<int:share_id>/cancel/",
        works.invitation_cancel,
        name="invitation-cancel",
    ),
    path("browse/", offers.browse, name="browse"),
    path("offers/<int:offer_id>/", offers.offer_detail, name="offer"),
    path("offers/<int:offer_id>/accept/", offers.offer_accept, name="offer-accept"),
    path("grants/", offers.grants, name="grants"),
    path("grants/<int:grant_id>/approve/", offers.grant_decide, {"approve": True}, name="grant-approve"),
    path("grants/<int:grant_id>/reject/", offers.grant_decide, {"approve": False}, name="grant-reject"),
    path("derivatives/new/", derivatives.derivative_new, name="derivative-new"),
    path("claims/", claims.claims, name="claims"),
    path("claims/<int:claim_id>/", claims.claim_detail, name="claim"),
    path("claims/<int:claim_id>/decide/", claims.claim_decide, name="claim-decide"),
    path("claims/<int:claim_id>/dispute/", claims.claim_dispute, name="claim-dispute"),
    path("claims/<int:claim_id>/appeal/", claims.claim_appeal, name="claim-appeal"),
    path("keys/", keys.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", keys.key_revoke, name="key-revoke"),
    path("earnings/", money.earnings, name="earnings"),
    path("statements/new/", money.statement_new, name="statement-new"),
    path("statements/<int:statement_id>/csv/", money.statement_csv, name="statement-csv"),
    path("payouts/", payouts.payouts_page, name="payouts"),
    path("balance/", money.balance, name="balance"),
    path("balance/caps/", money.spend_cap_set, name="spend-cap-set"),
    path("quickstart/", money.quickstart, name="quickstart"),
    path("usage/", money.usage, name="usage"),
    path("receipts/", money.receipts, name="receipts"),
    path("outputs/", money.outputs, name="outputs"),
    path("passages/", text.retrieved_passages, name="retrieved-passages"),
    path("staff/disputes/", operator.staff_disputes, name="staff-disputes"),
    path("", include("dashboard.urls_payouts")),
    path("", include("dashboard.urls_studio")),
    path("", include("dashboard.urls_datasets")),
]

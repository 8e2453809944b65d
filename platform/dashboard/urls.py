from django.urls import include, path

from dashboard import views, views_payouts

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("works/", views.works, name="works"),
    path("works/new/", views.work_new, name="work-new"),
    path("works/<int:work_id>/", views.work_detail, name="work"),
    path("works/<int:work_id>/assets/", views.asset_upload, name="asset-upload"),
    path("works/<int:work_id>/split-sheet/", views.split_edit, name="split-edit"),
    path("works/<int:work_id>/offers/new/", views.offer_new, name="offer-new"),
    path("works/<int:work_id>/offers/preview/", views.offer_preview, name="offer-preview"),
    path("assets/<int:asset_id>/status/", views.asset_status, name="asset-status"),
    path("assets/<int:asset_id>/file/", views.asset_file, name="asset-file"),
    path("invitations/accept/", views.invitation_accept, name="invitation-accept"),
    path("browse/", views.browse, name="browse"),
    path("offers/<int:offer_id>/", views.offer_detail, name="offer"),
    path("offers/<int:offer_id>/accept/", views.offer_accept, name="offer-accept"),
    path("grants/", views.grants, name="grants"),
    path("grants/<int:grant_id>/approve/", views.grant_decide, {"approve": True}, name="grant-approve"),
    path("grants/<int:grant_id>/reject/", views.grant_decide, {"approve": False}, name="grant-reject"),
    path("derivatives/new/", views.derivative_new, name="derivative-new"),
    path("claims/", views.claims, name="claims"),
    path("claims/<int:claim_id>/", views.claim_detail, name="claim"),
    path("claims/<int:claim_id>/decide/", views.claim_decide, name="claim-decide"),
    path("claims/<int:claim_id>/dispute/", views.claim_dispute, name="claim-dispute"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("earnings/", views.earnings, name="earnings"),
    path("statements/new/", views.statement_new, name="statement-new"),
    path("statements/<int:statement_id>/csv/", views.statement_csv, name="statement-csv"),
    path("payouts/", views_payouts.payouts_page, name="payouts"),
    path("balance/", views.balance, name="balance"),
    path("usage/", views.usage, name="usage"),
    path("receipts/", views.receipts, name="receipts"),
    path("outputs/", views.outputs, name="outputs"),
    path("staff/disputes/", views.staff_disputes, name="staff-disputes"),
    path("", include("dashboard.urls_payouts")),
    path("", include("dashboard.urls_studio")),
    path("", include("dashboard.urls_datasets")),
]

"""The dashboard pages for studio."""

from django.urls import URLPattern, URLResolver, path

from dashboard import views_studio

urlpatterns: list[URLPattern | URLResolver] = [
    path("create/", views_studio.create, name="create"),
    path("create/wallet/top-up/", views_studio.wallet_top_up, name="create-top-up"),
    path("create/offers/<int:offer_id>/", views_studio.create_from, name="create-from"),
    path("create/offers/<int:offer_id>/accept/", views_studio.accept, name="create-accept"),
    path("create/offers/<int:offer_id>/start/", views_studio.start, name="create-start"),
    path("create/jobs/<int:job_id>/", views_studio.job, name="create-job"),
    path("create/jobs/<int:job_id>/status/", views_studio.job_status, name="create-job-status"),
    path("create/jobs/<int:job_id>/release/", views_studio.release, name="create-release-set"),
    path("create/releases/<int:release_id>/", views_studio.release_detail, name="create-release"),
    path("create/releases/<int:release_id>/buy/", views_studio.release_buy, name="create-release-buy"),
]

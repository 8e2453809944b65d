"""The dashboard pages for studio."""

from django.urls import URLPattern, URLResolver, path

from dashboard.views import studio

urlpatterns: list[URLPattern | URLResolver] = [
    path("create/", studio.create, name="create"),
    path("create/wallet/top-up/", studio.wallet_top_up, name="create-top-up"),
    path("create/offers/<int:offer_id>/", studio.create_from, name="create-from"),
    path("create/offers/<int:offer_id>/accept/", studio.accept, name="create-accept"),
    path("create/offers/<int:offer_id>/start/", studio.start, name="create-start"),
    path("create/jobs/<int:job_id>/", studio.job, name="create-job"),
    path("create/jobs/<int:job_id>/status/", studio.job_status, name="create-job-status"),
    path("create/jobs/<int:job_id>/release/", studio.release, name="create-release-set"),
    path("create/releases/<int:release_id>/", studio.release_detail, name="create-release"),
    path("create/releases/<int:release_id>/buy/", studio.release_buy, name="create-release-buy"),
    path(
        "create/releases/<int:release_id>/approve/",
        studio.release_decide,
        {"approve": True},
        name="create-release-approve",
    ),
    path(
        "create/releases/<int:release_id>/refuse/",
        studio.release_decide,
        {"approve": False},
        name="create-release-refuse",
    ),
]

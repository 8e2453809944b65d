"""The dashboard pages for datasets."""

from django.urls import URLPattern, URLResolver, path

from dashboard.views import datasets as views

urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets/", views.datasets, name="datasets"),
    path("datasets/new/", views.dataset_new, name="dataset-new"),
    path("datasets/do-not-train/", views.do_not_train, name="dataset-do-not-train"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
    path("datasets/<int:dataset_id>/contribute/", views.dataset_contribute, name="dataset-contribute"),
    path("datasets/<int:dataset_id>/snapshots/", views.snapshot_new, name="dataset-snapshot-new"),
    path("datasets/items/<int:item_id>/opt-out/", views.item_opt_out, name="dataset-item-opt-out"),
    path("datasets/snapshots/<int:snapshot_id>/buy/", views.snapshot_buy, name="dataset-snapshot-buy"),
    path("datasets/licences/<int:licence_id>/", views.licence_detail, name="dataset-licence"),
    path("datasets/download/<str:token>/", views.download, name="dataset-download"),
]

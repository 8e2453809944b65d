from django.urls import URLPattern, URLResolver, path

from datasets import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets", apis.DatasetListCreateApi.as_view(), name="datasets"),
    path("datasets/<int:dataset_id>", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/items", apis.ItemListCreateApi.as_view(), name="dataset-items"),
    path(
        "datasets/<int:dataset_id>/snapshots", apis.SnapshotListCreateApi.as_view(), name="dataset-snapshots"
    ),
    path("dataset-items/<int:item_id>/opt-out", apis.ItemOptOutApi.as_view(), name="dataset-item-opt-out"),
    path("dataset-snapshots/<int:snapshot_id>", apis.SnapshotDetailApi.as_view(), name="dataset-snapshot"),
    path(
        "dataset-snapshots/<int:snapshot_id>/items",
        apis.SnapshotItemListApi.as_view(),
        name="dataset-snapshot-items",
    ),
    path(
        "dataset-snapshots/<int:snapshot_id>/licences",
        apis.LicencePurchaseApi.as_view(),
        name="dataset-snapshot-licences",
    ),
    path("dataset-licences", apis.LicenceListApi.as_view(), name="dataset-licences"),
    path("dataset-licences/<int:licence_id>", apis.LicenceDetailApi.as_view(), name="dataset-licence"),
    path(
        "dataset-licences/<int:licence_id>/links",
        apis.LicenceLinksApi.as_view(),
        name="dataset-licence-links",
    ),
    path("dataset-downloads/<str:token>", apis.DownloadApi.as_view(), name="dataset-download"),
    path("dataset-contributions", apis.ContributionListApi.as_view(), name="dataset-contributions"),
    path("training-opt-outs", apis.TrainingOptOutApi.as_view(), name="training-opt-outs"),
]

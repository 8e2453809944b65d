from django.urls import path

from studio import apis

urlpatterns = [
    path("generators", apis.GeneratorListApi.as_view(), name="generators"),
    path("wallet", apis.WalletApi.as_view(), name="wallet"),
    path("offers/<int:offer_id>/studio-accept", apis.TermsAcceptApi.as_view(), name="studio-terms-accept"),
    path("generation-jobs", apis.JobListCreateApi.as_view(), name="generation-jobs"),
    path("generation-jobs/<int:job_id>", apis.JobDetailApi.as_view(), name="generation-job-detail"),
    path("generation-jobs/<int:job_id>/result", apis.JobResultApi.as_view(), name="generation-job-result"),
    path("releases", apis.ReleaseListCreateApi.as_view(), name="releases"),
    path("releases/<int:release_id>", apis.ReleaseDetailApi.as_view(), name="release-detail"),
    path("releases/<int:release_id>/withdraw", apis.ReleaseWithdrawApi.as_view(), name="release-withdraw"),
    path("releases/<int:release_id>/approve", apis.ReleaseApproveApi.as_view(), name="release-approve"),
    path("releases/<int:release_id>/refuse", apis.ReleaseRefuseApi.as_view(), name="release-refuse"),
    path("release-approvals", apis.ReleaseApprovalListApi.as_view(), name="release-approvals"),
    path("releases/<int:release_id>/purchase", apis.ReleasePurchaseApi.as_view(), name="release-purchase"),
    path("releases/<int:release_id>/download", apis.ReleaseDownloadApi.as_view(), name="release-download"),
]

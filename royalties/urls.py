from django.urls import path

from royalties import apis

urlpatterns = [
    path("earnings", apis.EarningsApi.as_view(), name="earnings"),
    path("statements", apis.StatementListCreateApi.as_view(), name="statements"),
    path("statements/csv", apis.StatementCsvApi.as_view(), name="statement-csv"),
    path("revenue-reports", apis.RevenueReportCreateApi.as_view(), name="revenue-reports"),
    path("revenue-reports/csv", apis.RevenueReportUploadApi.as_view(), name="revenue-reports-csv"),
]

from django.urls import path

from access import apis, apis_retrieval

urlpatterns = [
    path("access", apis.AccessApi.as_view(), name="access"),
    path("usage", apis.UsageApi.as_view(), name="usage"),
    path("outputs", apis.OutputsApi.as_view(), name="outputs"),
    path("retrieve", apis_retrieval.RetrieveApi.as_view(), name="retrieve"),
    path("retrieved-passages", apis_retrieval.RetrievedPassageListApi.as_view(), name="retrieved-passages"),
]

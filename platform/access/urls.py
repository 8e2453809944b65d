from django.urls import path

from access import apis

urlpatterns = [
    path("access", apis.AccessApi.as_view(), name="access"),
    path("usage", apis.UsageApi.as_view(), name="usage"),
    path("outputs", apis.OutputsApi.as_view(), name="outputs"),
]

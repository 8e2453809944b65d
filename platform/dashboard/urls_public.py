"""Public pages, outside /dashboard/: anyone may open and share them."""

from django.urls import URLPattern, URLResolver, path

from dashboard.views import public

urlpatterns: list[URLPattern | URLResolver] = [
    path("releases/<int:release_id>/", public.release_page, name="release-public"),
    path("works/<int:work_id>/", public.work_page, name="work-public"),
    path("works/<int:work_id>/public-preview", public.work_preview, name="work-public-preview"),
]

"""Public, crawler-facing documents: robots.txt announcing the licences, and the RSL licence feed."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from catalog import rsl, selectors


@require_GET
@cache_control(max_age=300, public=True)
def robots_txt(request: HttpRequest) -> HttpResponse:
    lines = [
        "User-agent: *",
        "Disallow: /admin/",
        "Disallow: /accounts/",
        "Allow: /",
        "",
        "# Machine-readable licence terms for every published work (RSL 1.0)",
        f"License: {settings.SITE_URL}/licenses.xml",
        "",
    ]
    return HttpResponse("\n".join(lines), content_type="text/plain; charset=utf-8")


@require_GET
@cache_control(max_age=300, public=True)
def licenses_xml(request: HttpRequest) -> HttpResponse:
    document = rsl.render(selectors.offers_public().order_by("work_id"), site_url=settings.SITE_URL)
    return HttpResponse(document, content_type=rsl.CONTENT_TYPE)

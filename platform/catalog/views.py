"""Public, crawler-facing documents: robots.txt announcing the licences, and the RSL licence feed."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from catalog import consent, reservations, rsl, selectors


# Generated on each request (a withdrawn consent shows on the next one): caches may keep them one minute.
@require_GET
@cache_control(max_age=60, public=True)
def robots_txt(request: HttpRequest) -> HttpResponse:
    lines = [
        "# Works are licensed per use; their content URLs answer 402 with the price and every way to pay.",
        *reservations.robots_lines(),
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
@cache_control(max_age=60, public=True)
def licenses_xml(request: HttpRequest) -> HttpResponse:
    offers = list(selectors.offers_public().order_by("work_id"))
    document = rsl.render(
        offers,
        site_url=settings.SITE_URL,
        refused=consent.refused_uses([offer.work_id for offer in offers]),
    )
    return HttpResponse(document, content_type=rsl.CONTENT_TYPE)


@require_GET
@cache_control(max_age=60, public=True)
def tdmrep_json(request: HttpRequest) -> JsonResponse:
    """W3C TDMRep: text and data mining rights are reserved for every published work, with its policy."""
    return JsonResponse(reservations.tdmrep(), safe=False)

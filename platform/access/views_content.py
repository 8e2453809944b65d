"""The content URLs (originals, for the entitled) and preview URLs (for anyone who may see the work), and the
RSL licence server's endpoints. Plain Django views: they answer files, 402s and OAuth documents."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access import content, licensing, payments, services
from access.content import Entitlement, StoredFile
from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate
from catalog import consent, reservations
from common.problems import PROBLEM_CONTENT_TYPE, ApiError, problem_body

_AUTH_REALM = 'License realm="tribute"'


def _user(request: HttpRequest) -> User | None:
    user = request.user
    return user if isinstance(user, User) and user.is_authenticated else None


def _reservation_headers(response: HttpResponseBase, file: StoredFile) -> None:
    """The licence and the creator's reservations, on every answer about a work's content."""
    for name, value in reservations.content_headers(work_id=file.work_id).items():
        response[name] = value


def _original(file: StoredFile, entitlement: Entitlement) -> FileResponse:
    """The original bytes, streamed from storage (never read whole into memory)."""
    response = FileResponse(content.open_original(file), content_type=file.media_type)
    response["Content-Length"] = str(file.size_bytes)
    response["Content-Disposition"] = (
        f'inline; filename="{file.sha256}.{file.storage_name.rsplit(".", 1)[-1]}"'
    )
    response["Cache-Control"] = "private, no-store"
    response["Digest-SHA256"] = file.sha256
    response["Entitlement"] = entitlement.form
    if entitlement.access_id:
        response["Access-Id"] = entitlement.access_id
    _reservation_headers(response, file)
    return response


def problem_response(
    status: int, code: str, detail: str, *, extra: dict[str, Any] | None = None
) -> HttpResponse:
    body = json.dumps(problem_body(status, code, detail, extra=extra)).encode()
    return HttpResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)


def _problem(error: ApiError, file: StoredFile | None = None) -> HttpResponse:
    code = str(getattr(error, "problem_code", error.default_code))
    response = problem_response(
        int(error.status_code), code, str(error.detail), extra=getattr(error, "extra", None)
    )
    if isinstance(error, licensing.LicenseRefused):
        response["WWW-Authenticate"] = f'{_AUTH_REALM}, error="{code}"'
    if file is not None:
        _reservation_headers(response, file)
    return response


def _license_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "license" and token.strip() else None


def _asked(request: HttpRequest, file: StoredFile) -> services.AccessRequest | None:
    """The access an unpaid or x402-paid GET asks for: `?use=` (else the cheapest priced use on offer) and
    `?territory=` (else unknown, which only worldwide terms cover)."""
    use = request.GET.get("use") or content.default_use(file.work)
    if use is None:
        return None
    if use not in services.METERED_USES:
        raise ApiError(f"Unknown use {use!r}.", code="invalid_use_class")
    territory = (request.GET.get("territory") or content.DEFAULT_TERRITORY).upper()
    if len(territory) != 2 or not territory.isalpha():
        raise ApiError("territory must be an ISO 3166-1 alpha-2 country code.", code="invalid_territory")
    return services.AccessRequest(work_id=file.work_id, use_class=use, territory=territory)


@require_GET
def content_view(request: HttpRequest, work_id: int, asset_id: int | None = None) -> HttpResponseBase:
    """A work's original file, to whoever is entitled to it now; a 402 (x402 + RSL) to everyone else."""
    try:
        file = content.content_file(work_id=work_id, asset_id=asset_id)
    except ApiError as exc:
        return _problem(exc)
    try:
        return _content(request, file)
    except ApiError as exc:
        return _problem(exc, file)


def _content(request: HttpRequest, file: StoredFile) -> HttpResponseBase:
    link = request.GET.get("delivery")
    if link:
        return _original(file, content.delivery_entitlement(token=link, file=file))
    token = _license_token(request)
    if token is not None:
        return _original(file, content.license_entitlement(token=token, file=file))
    user = _user(request)
    entitled = content.session_entitlement(user=user, work=file.work)
    if entitled is not None:
        return _original(file, entitled)
    if not content.is_public(file.work):
        return _problem(ApiError("No such file.", code="content_not_found", status_code=404))
    if not content.priced_uses(file.work):
        return _unpayable(request, file)
    asked = _asked(request, file)
    signature = request.META.get("HTTP_PAYMENT_SIGNATURE")
    if asked is None:
        return _unpayable(request, file)
    if signature:
        return _paid(request, file, asked, signature)
    return _payment_required(request, file, asked)


def _paid(
    request: HttpRequest, file: StoredFile, asked: services.AccessRequest, signature: str
) -> HttpResponseBase:
    """x402 keyless: the payment is the authentication; its wallet is the licensee."""
    refusal = consent.use_refusal(work_id=file.work_id, use_class=asked.use_class)
    if refusal is not None:  # refused before anything is made for the wallet
        raise refusal.error()
    if asked.use_class not in content.priced_uses(file.work):
        raise ApiError(
            f"The terms do not allow '{asked.use_class}'.", code="use_not_allowed", status_code=403
        )
    payload, payer = payments.payer_of(signature)
    organisation, _ = payments.wallet_organisation(payer=payer)
    paid = payments.x402_pay(
        organisation=organisation,
        api_key=None,
        request=asked,
        payment_header=signature,
        idempotency_key=payments.new_idempotency_key(),
        payment=payload,
    )
    entitlement = Entitlement(form=content.X402, use_class=asked.use_class, licensee=f"wallet:{payer}")
    if paid.result is not None:
        entitlement = Entitlement(
            form=content.X402,
            use_class=asked.use_class,
            licensee=f"wallet:{payer}",
            access_id=paid.result.access_id,
        )
    response = _original(file, entitlement)
    response["PAYMENT-RESPONSE"] = paid.response_header
    if paid.result is not None:
        response["Access-Receipt"] = paid.result.receipt
    return response


def _ways_to_pay(file: StoredFile) -> dict[str, Any]:
    return {
        "preview": services.content_url(file.work_id, file.asset_id).removesuffix("/content") + "/preview",
        "license": f"{settings.SITE_URL}/licenses.xml",
        "license_server": f"{settings.SITE_URL}/rsl",
        "access_api": f"{settings.SITE_URL}/api/v1/access",
    }


def _payment_required(request: HttpRequest, file: StoredFile, asked: services.AccessRequest) -> HttpResponse:
    refusal = consent.use_refusal(work_id=file.work_id, use_class=asked.use_class)
    if refusal is not None:
        return _problem(refusal.error(), file)
    prices = content.priced_uses(file.work)
    if asked.use_class not in prices:
        return _problem(
            ApiError(f"The terms do not allow '{asked.use_class}'.", code="use_not_allowed", status_code=403),
            file,
        )
    offer_currency = content.offer_currency(file.work)
    url = request.build_absolute_uri(request.path) + f"?use={asked.use_class}"
    required = payments.payment_required(
        price_minor=prices[asked.use_class],
        currency=offer_currency,
        access=asked,
        url=url,
        mime_type=file.media_type,
        error="payment required",
    )
    body = {
        "use": asked.use_class,
        "price_minor": prices[asked.use_class],
        "currency": offer_currency,
        "prices_minor": prices,
        "x402": required,
        **_ways_to_pay(file),
    }
    response = problem_response(
        402,
        "payment_required",
        f"Paying is the only way to this work's original: {asked.use_class} costs "
        f"{prices[asked.use_class]} {offer_currency} minor units.",
        extra=body,
    )
    response["PAYMENT-REQUIRED"] = base64.b64encode(json.dumps(required).encode()).decode()
    response["WWW-Authenticate"] = _AUTH_REALM
    _reservation_headers(response, file)
    return response


def _unpayable(request: HttpRequest, file: StoredFile) -> HttpResponse:
    """Nothing a GET can buy (every use free, or terms that need a licence fee or approval first): a
    licence (a token, or an access with an API key under a grant) is the way in."""
    response = problem_response(
        401,
        "license_required",
        "This work's original is served only under a licence: acquire a licence token from the licence "
        "server named in licenses.xml, or access it with an API key.",
        extra=_ways_to_pay(file),
    )
    response["WWW-Authenticate"] = _AUTH_REALM
    _reservation_headers(response, file)
    return response


@require_GET
def preview_view(request: HttpRequest, work_id: int, asset_id: int | None = None) -> HttpResponseBase:
    """A work's preview (a marked, reduced image; a short, low-bitrate audio clip), to anyone who may see
    the work."""
    try:
        file = content.content_file(work_id=work_id, asset_id=asset_id)
        if not content.may_see(user=_user(request), work=file.work):
            raise ApiError("No such file.", code="content_not_found", status_code=404)
        name, media_type = content.preview_of(file)
    except ApiError as exc:
        return _problem(exc)
    response = FileResponse(content.open_preview(name), content_type=media_type)
    response["Cache-Control"] = "public, max-age=3600"
    response["Content-Disposition"] = "inline"
    _reservation_headers(response, file)
    return response


# The RSL licence server -------------------------------------------------------------------------------


def _oauth_error(error: str, description: str, status: int = 400) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="tribute-rsl"'
    return response


def _client(request: HttpRequest) -> ApiKey | None:
    """The registered client: an organisation's API key with the `access` scope, by HTTP Basic (client_id
    = the key's prefix, client_secret = the key) or the same two form fields."""
    client_id, secret = request.POST.get("client_id", ""), request.POST.get("client_secret", "")
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
    if not secret:
        return None
    key = api_key_authenticate(secret=secret)
    if key is None or key.prefix != client_id or not key.has_scope("access") or key.organisation_id is None:
        return None
    return key


@csrf_exempt
@require_POST
def rsl_token(request: HttpRequest) -> JsonResponse:
    """OLP token endpoint: `grant_type=rsl` (or `client_credentials`), `resource`, and `license` (an RSL
    <license> element) or `scope` (a use class). The licence is charged as one access."""
    client = _client(request)
    if client is None:
        return _oauth_error("invalid_client", "Unknown client or wrong secret.", status=401)
    if request.POST.get("grant_type") not in {"rsl", "client_credentials"}:
        return _oauth_error("unsupported_grant_type", "Use grant_type=rsl.")
    resource = request.POST.get("resource", "")
    try:
        if request.POST.get("license"):
            use = licensing.use_of_license(request.POST["license"])
        else:
            use = request.POST.get("scope", "")
            if use not in services.METERED_USES:
                return _oauth_error("invalid_scope", "Name a use (scope) or send the RSL license element.")
        territory = request.POST.get("territory", content.DEFAULT_TERRITORY).upper()
        answer = licensing.license_issue(
            api_key=client, resource=resource, use_class=use, territory=territory
        )
    except licensing.OAuthError as exc:
        return _oauth_error(exc.problem_code, str(exc.detail))
    except ApiError as exc:
        # Refused by the terms, consent or the balance: OAuth's error, with the problem's code and status.
        response = _oauth_error("access_denied", str(exc.detail), status=int(exc.status_code))
        response["Problem-Code"] = exc.problem_code
        return response
    response = JsonResponse(answer)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
def rsl_introspect(request: HttpRequest) -> JsonResponse:
    """RFC 7662 introspection of a licence token, for registered clients."""
    if _client(request) is None:
        return _oauth_error("invalid_client", "Unknown client or wrong secret.", status=401)
    return JsonResponse(licensing.license_introspect(token=request.POST.get("token", "")))


@require_http_methods(["GET", "HEAD"])
def rsl_keys(request: HttpRequest) -> JsonResponse:
    """The licence server's public keys (the same Ed25519 keys that sign receipts)."""
    from access import receipts, signing

    return JsonResponse({"keys": [receipts.jwk(key) for key in signing.public_keys()]})

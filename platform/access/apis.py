"""POST /api/v1/access, the hot path, and the public key that verifies its receipts."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import APIException, AuthenticationFailed, Throttled
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access import fastpath, payments, receipts, selectors, services, signing
from access.models import X402Payment
from accounts import ratelimits
from accounts.authentication import KEY_REFUSED
from accounts.models import ApiKey, Organisation, Role
from accounts.permissions import KeyScope, authenticated_user
from accounts.services import api_key_forget
from catalog import tracing
from catalog.apis_tracing import TraceMatchSerializer
from common.problems import ApiError, problem_response
from common.uploads import read_upload
from royalties.ledger import InsufficientFunds
from royalties.selectors import prepaid_available

IDEMPOTENCY_HEADER = "Idempotency-Key"


class HasAccessKey(BasePermission):
    message = "Metered access needs an API key with the `access` scope, belonging to an organisation."

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, ApiKey) and fastpath.access_key(request.auth)


def idempotency_key_of(meta: dict[str, Any]) -> str:
    """The request's Idempotency-Key; a 400 problem when it is missing or too long."""
    key = fastpath.idempotency_key(meta)
    if key is None:
        raise ApiError(
            f"Send an {IDEMPOTENCY_HEADER} header (1 to {fastpath.MAX_IDEMPOTENCY_KEY} characters).",
            code="idempotency_key_required",
        )
    return key


class AccessApi(APIView):
    """Ask to use a work or style for a purpose, and pay for it from the prepaid balance.

    200: a signed receipt. 402: not enough balance (the body and the `PAYMENT-REQUIRED` header say how to
    pay; retry with a `PAYMENT-SIGNATURE` header to pay on-chain with x402). 403: a term refuses the use
    (`code` names it). 409: the Idempotency-Key was used for another request.
    """

    permission_classes = [IsAuthenticated, HasAccessKey]
    required_scope = "access"  # what HasAccessKey checks; named here for readers of the view

    class InputSerializer(serializers.Serializer):
        work = serializers.IntegerField(min_value=1, max_value=fastpath.MAX_ID)
        use = serializers.ChoiceField(choices=[u.value for u in services.METERED_USES])
        territory = serializers.RegexField(r"^[A-Za-z]{2}$", help_text="ISO 3166-1 alpha-2 country code")

        class Meta:
            ref_name = "AccessInput"

    class OutputSerializer(serializers.Serializer):
        access_id = serializers.UUIDField()
        work = serializers.IntegerField()
        offer = serializers.IntegerField()
        offer_version = serializers.IntegerField()
        use = serializers.CharField()
        price_minor = serializers.IntegerField()
        currency = serializers.CharField()
        granted_at = serializers.DateTimeField()
        receipt = serializers.CharField(help_text="compact JWS (EdDSA); keys at /.well-known/jwks.json")

        class Meta:
            ref_name = "AccessReceipt"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """The common call (an access-scoped API key, a well-formed JSON body, no payment header) skips
        DRF's request wrapping, content negotiation and renderers: they cost as much as the charge itself.
        Anything else, and every error and 402, goes through DRF as usual."""
        plain = fastpath.plain_call(request)
        if plain is None:
            return super().dispatch(request, *args, **kwargs)
        api_key, key, access = plain
        # DRF's throttles are skipped with the rest of its machinery: the key's quotas are counted here.
        usage = ratelimits.api_usage(request, user=None, api_key=api_key)
        if usage is not None and usage.limited:
            return self._finish_with_drf(request, Throttled(wait=usage.retry_after_s), *args, **kwargs)
        try:
            response = self._access(api_key, key, access, payment_header=None)
        except APIException as exc:
            return self._finish_with_drf(request, exc, *args, **kwargs)
        if isinstance(response, Response):  # the 402
            return self._finish_with_drf(request, response, *args, **kwargs)
        for header, value in self.default_response_headers.items():
            response[header] = value
        return response

    def _finish_with_drf(
        self, request: HttpRequest, outcome: Response | APIException, *args: Any, **kwargs: Any
    ) -> Response:
        """Answer a plain call's error or 402 as DRF's own dispatch would have."""
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request, self.args, self.kwargs = drf_request, args, kwargs
        self.headers = self.default_response_headers
        response = self.handle_exception(outcome) if isinstance(outcome, APIException) else outcome
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer},
        parameters=[
            OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("PAYMENT-SIGNATURE", str, OpenApiParameter.HEADER, required=False),
        ],
        operation_id="access_create",
    )
    def post(self, request: Request) -> Response | HttpResponse:
        api_key = request.auth
        assert isinstance(api_key, ApiKey) and api_key.organisation is not None
        key = idempotency_key_of(request.META)
        access = fastpath.well_formed(request.data)
        if access is None:  # let the serializer say what is wrong
            data = self.InputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            access = services.AccessRequest(
                work_id=data.validated_data["work"],
                use_class=data.validated_data["use"],
                territory=data.validated_data["territory"].upper(),
            )
        return self._access(api_key, key, access, payment_header=request.headers.get("PAYMENT-SIGNATURE"))

    def _access(
        self, api_key: ApiKey, key: str, access: services.AccessRequest, payment_header: str | None
    ) -> Response | HttpResponse:
        organisation = api_key.organisation
        assert organisation is not None
        settlement = None
        if payment_header:
            settlement = payments.x402_pay(
                organisation=organisation,
                api_key=api_key,
                request=access,
                payment_header=payment_header,
                idempotency_key=key,
            )
            if settlement.result is None:  # settled, waiting for CHAIN_CONFIRMATIONS
                return payment_pending_response(settlement.payment, settlement.response_header, what="access")
        try:
            result = (
                settlement.result
                if settlement is not None and settlement.result is not None
                else services.access_request(
                    organisation=organisation,
                    api_key=api_key,
                    idempotency_key=key,
                    request=access,
                    paid_by_x402=False,
                )
            )
        except InsufficientFunds as exc:
            return self._payment_required(exc, organisation=organisation, access=access)
        except services.KeyNoLongerActive:
            api_key_forget(api_key_id=api_key.pk)
            raise AuthenticationFailed(KEY_REFUSED) from None
        response = HttpResponse(result.body, status=200, content_type="application/json")
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        if settlement is not None:
            response["PAYMENT-RESPONSE"] = settlement.response_header
        return response

    def _payment_required(
        self, exc: InsufficientFunds, *, organisation: Organisation, access: services.AccessRequest
    ) -> Response:
        price = int(exc.extra["price_minor"])
        currency = str(exc.extra["currency"])
        requirement = payments.payment_required(price_minor=price, currency=currency, access=access)
        return payment_required_response(exc, organisation=organisation, requirement=requirement)


def payment_required_response(
    exc: InsufficientFunds,
    *,
    organisation: Organisation,
    requirement: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Response:
    """The 402 of a short balance: the price, the balance, where to top it up and the x402 requirement,
    also in the PAYMENT-REQUIRED header."""
    price = int(exc.extra["price_minor"])
    currency = str(exc.extra["currency"])
    body = {
        "price_minor": price,
        "currency": currency,
        "balance_minor": prepaid_available(organisation=organisation, currency=currency),
        "top_up_url": settings.SITE_URL + reverse("dashboard:balance"),
        "x402": requirement,
        **(extra or {}),
    }
    response = problem_response(402, exc.problem_code, str(exc.detail), extra=body)
    response["PAYMENT-REQUIRED"] = base64.b64encode(json.dumps(requirement).encode()).decode()
    return response


def payment_pending_response(
    payment: X402Payment | None, response_header: str | None, *, what: str
) -> JsonResponse:
    """202: paid on chain, credited once the payment is CHAIN_CONFIRMATIONS deep."""
    pending = JsonResponse(
        {
            "status": "payment_pending_confirmation",
            "transaction": payment.transaction_hash if payment is not None else "",
            "detail": f"Paid; the {what} is granted once the payment is confirmed on chain. "
            "Repeat this request with the same Idempotency-Key (without PAYMENT-SIGNATURE).",
        },
        status=202,
    )
    if response_header:
        pending["PAYMENT-RESPONSE"] = response_header
    return pending


@require_GET
@cache_control(max_age=3600, public=True)
def jwks(request: HttpRequest) -> JsonResponse:
    """The public keys that verify access receipts (RFC 7517)."""
    return JsonResponse({"keys": [receipts.jwk(key) for key in signing.public_keys()]})


class UsageApi(APIView):
    """Accesses and spend by work, use and day: a vendor sees its own, a creator those of their works."""

    class RowSerializer(serializers.Serializer):
        day = serializers.DateField()
        work = serializers.IntegerField()
        work_title = serializers.CharField(source="work__title")
        use_class = serializers.CharField()
        currency = serializers.CharField()
        accesses = serializers.IntegerField()
        spend_minor = serializers.IntegerField()

        class Meta:
            ref_name = "UsageRow"

    @extend_schema(
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATE, OpenApiParameter.QUERY),
            OpenApiParameter("until", OpenApiTypes.DATE, OpenApiParameter.QUERY),
        ],
        responses=RowSerializer(many=True),
        operation_id="usage_list",
    )
    def get(self, request: Request) -> Response:
        parsed = {}
        unknown = sorted(set(request.query_params) - {"since", "until"})
        if unknown:
            raise serializers.ValidationError({name: ["Unknown query parameter."] for name in unknown})
        for name in ("since", "until"):
            if name in request.query_params:  # present but empty is an error, not "no bound"
                field = serializers.DateField()
                try:
                    parsed[name] = field.to_internal_value(request.query_params[name])
                except serializers.ValidationError as exc:
                    raise serializers.ValidationError({name: exc.detail}) from None
        rows = selectors.usage(user=authenticated_user(request), **parsed)
        return Response(self.RowSerializer(rows, many=True).data)


class OutputsApi(APIView):
    """Register a generated output (multipart `file`: media or text, and `receipts`: access ids or
    retrieval ids of the sources it used).

    The answer says which claimed sources the output was confirmed to match, which it did not, and which
    registered works it matches that no receipt covers (each opens a claim for the work's owners).
    """

    parser_classes = [MultiPartParser]
    permission_classes = [IsAuthenticated, KeyScope]
    required_scope = "outputs"
    quota_scope = "outputs"  # outputs per day (accounts.ratelimits)

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        receipts = serializers.ListField(
            child=serializers.UUIDField(), required=False, default=list, max_length=100
        )

        class Meta:
            ref_name = "OutputInput"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField(source="output.pk")
        sha256 = serializers.CharField(source="output.blob_id")
        confirmed_works = serializers.ListField(child=serializers.IntegerField())
        unconfirmed_works = serializers.ListField(child=serializers.IntegerField())
        uncovered = TraceMatchSerializer(many=True)
        claims = serializers.ListField(child=serializers.IntegerField(), source="claim_ids")

        class Meta:
            ref_name = "OutputResult"

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer},
        operation_id="outputs_create",
    )
    def post(self, request: Request) -> Response:
        user = authenticated_user(request)
        organisation = request.auth.organisation if isinstance(request.auth, ApiKey) else None
        if user.role != Role.VENDOR:
            raise ApiError(
                "Outputs are registered by AI vendors.", code="vendor_role_required", status_code=403
            )
        if organisation is None:
            raise ApiError(
                "Outputs are registered with an organisation's API key.",
                code="organisation_key_required",
                status_code=403,
            )
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        wanted = [str(r) for r in data.validated_data["receipts"]]
        receipts = selectors.receipts_of(organisation_ids=[organisation.pk], access_ids=wanted)
        # A text retrieval's receipt covers every work it sold passages of.
        retrievals = selectors.retrieval_receipts_of(organisation_ids=[organisation.pk], retrieval_ids=wanted)
        for retrieval_id, work_ids in retrievals.items():
            receipts.update({f"{retrieval_id}#{work_id}": work_id for work_id in work_ids})
        unknown = sorted(set(wanted) - set(receipts) - set(retrievals))
        if unknown:
            raise ApiError(
                f"Unknown receipts: {', '.join(unknown)}.", code="receipt_not_found", status_code=404
            )
        result = tracing.output_register(
            organisation=organisation,
            user=user,
            data=read_upload(upload),
            filename=upload.name or "",
            receipts=receipts,
        )
        body = {
            "output": result.output,
            "confirmed_works": result.confirmed_works,
            "unconfirmed_works": result.unconfirmed_works,
            "uncovered": result.uncovered,
            "claim_ids": [claim.pk for claim in result.claims],
        }
        return Response(self.OutputSerializer(body).data, status=201)

"""POST /api/v1/retrieve: passages of licensed text for a query, paid per 1,000 tokens."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from access import payments, selectors, services
from access.apis import (
    IDEMPOTENCY_HEADER,
    HasAccessKey,
    idempotency_key_of,
    payment_pending_response,
    payment_required_response,
)
from access.models import RetrievalPassage
from accounts.authentication import KEY_REFUSED
from accounts.models import ApiKey
from accounts.permissions import authenticated_user
from accounts.services import api_key_forget
from catalog.models import RETRIEVAL_USES
from common import currency
from common.apis import SelectorListApi
from common.problems import ApiError


class RetrievedPassageSerializer(serializers.Serializer):
    work = serializers.IntegerField()
    title = serializers.CharField()
    offer = serializers.IntegerField()
    offer_version = serializers.IntegerField()
    text_version = serializers.IntegerField()
    start = serializers.IntegerField(help_text="character offset in the work's normalised text")
    end = serializers.IntegerField()
    tokens = serializers.IntegerField()
    price_per_1k_tokens_minor = serializers.IntegerField()
    price_minor = serializers.IntegerField()
    score = serializers.FloatField(help_text="cosine similarity to the query")
    sha256 = serializers.CharField(help_text="of the passage's text, as the receipt names it")
    text = serializers.CharField()

    class Meta:
        ref_name = "RetrievedPassage"


class RetrieveApi(APIView):
    """The passages of licensed text that best answer a query, within a token budget, each paid at its
    own work's price per 1,000 tokens for the use, all in one charge with one signed receipt.

    `use`: `ai-index` (snippets for a search index), `ai-input` (passages placed in a model's context) or
    `ai-train` (a work's whole text). 402: the balance is short; the answer pins the passages and their
    total in a quote (the body's `quote`, and the x402 requirement in `PAYMENT-REQUIRED`): repeat the
    request with the same Idempotency-Key and a `PAYMENT-SIGNATURE` paying exactly that total to receive
    those passages (202 while the payment waits for confirmations). 403 `spend_cap_reached`: the monthly
    cap would be exceeded; 409: the Idempotency-Key was used for another request. Nothing is charged then.
    """

    permission_classes = [IsAuthenticated, HasAccessKey]
    required_scope = "access"

    class InputSerializer(serializers.Serializer):
        query = serializers.CharField(max_length=services.MAX_QUERY_CHARACTERS)
        max_tokens = serializers.IntegerField(min_value=1, max_value=services.MAX_RETRIEVAL_TOKENS)
        use = serializers.ChoiceField(choices=[use.value for use in RETRIEVAL_USES])
        territory = serializers.RegexField(r"^[A-Za-z]{2}$", help_text="ISO 3166-1 alpha-2 country code")
        currency = serializers.CharField(min_length=3, max_length=3, default="USD")
        max_price_minor = serializers.IntegerField(
            min_value=0,
            max_value=services.MAX_QUERY_PRICE_MINOR,
            required=False,
            allow_null=True,
            default=None,
            help_text="the most this query may cost (minor units); passages over it are left out",
        )

        class Meta:
            ref_name = "RetrieveInput"

    class OutputSerializer(serializers.Serializer):
        retrieval_id = serializers.UUIDField()
        use = serializers.CharField()
        tokenizer = serializers.CharField(help_text="the offline tokenizer that counted the tokens")
        currency = serializers.CharField()
        total_tokens = serializers.IntegerField()
        total_minor = serializers.IntegerField()
        passages = RetrievedPassageSerializer(many=True)
        retrieved_at = serializers.DateTimeField()
        receipt = serializers.CharField(
            help_text="compact JWS (EdDSA) listing every passage; keys at /.well-known/jwks.json"
        )

        class Meta:
            ref_name = "RetrievalReceipt"

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer},
        parameters=[
            OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("PAYMENT-SIGNATURE", str, OpenApiParameter.HEADER, required=False),
        ],
        operation_id="retrieve_create",
    )
    def post(self, request: Request) -> HttpResponse:
        api_key = request.auth
        assert isinstance(api_key, ApiKey) and api_key.organisation is not None
        key = idempotency_key_of(request.META)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        if not currency.is_supported(fields["currency"].upper()):
            raise ApiError(f"Currency {fields['currency']!r} is not supported.", code="unsupported_currency")
        retrieval = services.RetrievalRequest(
            query=fields["query"],
            max_tokens=fields["max_tokens"],
            use_class=fields["use"],
            territory=fields["territory"].upper(),
            currency=fields["currency"].upper(),
            max_price_minor=fields["max_price_minor"],
        )
        try:
            bought = payments.retrieval_buy(
                organisation=api_key.organisation,
                api_key=api_key,
                idempotency_key=key,
                request=retrieval,
                payment_header=request.headers.get("PAYMENT-SIGNATURE"),
            )
        except services.RetrievalQuoted as exc:
            return payment_required_response(
                exc,
                organisation=api_key.organisation,
                requirement=payments.retrieval_payment_required(quote=exc.quote),
                extra={"quote": payments.retrieval_quote_summary(exc.quote)},
            )
        except services.KeyNoLongerActive:
            api_key_forget(api_key_id=api_key.pk)
            raise AuthenticationFailed(KEY_REFUSED) from None
        if bought.result is None:  # paid, waiting for CHAIN_CONFIRMATIONS
            return payment_pending_response(bought.payment, bought.response_header, what="retrieval")
        response = HttpResponse(bought.result.body, status=200, content_type="application/json")
        if bought.result.replayed:
            response["Idempotent-Replayed"] = "true"
        if bought.response_header:
            response["PAYMENT-RESPONSE"] = bought.response_header
        return response


class RetrievedPassageListApi(SelectorListApi):
    """Passages sold by retrieval: a vendor sees its own purchases, a creator the passages of their works
    that were bought, with the version, the character span, the tokens and the price."""

    class RowSerializer(serializers.ModelSerializer):
        retrieval_id = serializers.UUIDField(source="retrieval.retrieval_id")
        use = serializers.CharField(source="retrieval.use_class")
        currency = serializers.CharField(source="retrieval.currency")
        retrieved_at = serializers.DateTimeField(source="retrieval.created_at")
        work_title = serializers.CharField(source="work.title")
        version = serializers.IntegerField(source="text_version.version")

        class Meta:
            model = RetrievalPassage
            ref_name = "RetrievedPassageRow"
            fields = [
                "retrieval_id",
                "position",
                "use",
                "work",
                "work_title",
                "version",
                "start",
                "end",
                "tokens",
                "price_per_1k_tokens_minor",
                "price_minor",
                "currency",
                "retrieved_at",
            ]

    queryset = RetrievalPassage.objects.none()
    serializer_class = RowSerializer
    filterset_fields = ["work"]

    def select(self) -> QuerySet[RetrievalPassage]:
        return selectors.retrieved_passages_visible_to(user=authenticated_user(self.request))

"""The claim decisions that move money: the owner's decision and the operator's resolution."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import KeyScope, authenticated_user
from catalog import selectors
from catalog.apis_tracing import ClaimSerializer, claim_response
from catalog.models import ClaimDecision, ClaimResolution
from common import currency as currencies
from royalties import claims


class ClaimDecideApi(APIView):
    """The work's manager decides: monetize (a vendor's output is charged the terms' price for the use it
    made, held in escrow until the decision is final; an uploaded copy's revenue goes to the owners),
    track, or block (the copy is taken down, or the vendor's access to the work suspended)."""

    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=ClaimDecision.choices)
        price_minor = serializers.IntegerField(required=False, min_value=1, max_value=currencies.COLUMN_MAX)
        currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)

        class Meta:
            ref_name = "ClaimDecideInput"

    @extend_schema(request=InputSerializer, responses=ClaimSerializer, operation_id="claims_decide")
    def post(self, request: Request, claim_id: int) -> Response:
        user = authenticated_user(request)
        claim = selectors.claim_get_visible(user=user, claim_id=claim_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        price = None
        if "price_minor" in values:
            price = claims.NamedPrice(values["price_minor"], values.get("currency", "USD"))
        return claim_response(
            claims.claim_decide(claim=claim, user=user, decision=values["decision"], price=price)
        )


class ClaimResolveApi(APIView):
    """The operator resolves a disputed claim; its escrow goes to the winner."""

    permission_classes = [IsAuthenticated, IsAdminUser, KeyScope]

    class InputSerializer(serializers.Serializer):
        resolution = serializers.ChoiceField(choices=ClaimResolution.choices)
        statement = serializers.CharField(max_length=5000, required=False, default="")

        class Meta:
            ref_name = "ClaimResolveInput"

    @extend_schema(request=InputSerializer, responses=ClaimSerializer, operation_id="claims_resolve")
    def post(self, request: Request, claim_id: int) -> Response:
        user = authenticated_user(request)
        claim = selectors.claim_get_visible(user=user, claim_id=claim_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return claim_response(claims.claim_resolve(claim=claim, operator=user, **data.validated_data))

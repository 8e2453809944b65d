"""The payouts API: your payouts (staff: everyone's), and the wallets a vendor tops up from on chain."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organisation, User
from accounts.permissions import KeyScope, authenticated_user
from accounts.selectors import organisations_of
from common.apis import SelectorListApi
from common.problems import ApiError, NotFound
from contracts.chain import ChainError
from royalties import funding, payouts
from royalties.models import DepositAddress, Payout

# Payouts -----------------------------------------------------------------------------------------------


class PayoutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Payout
        fields = [
            "id",
            "key",
            "user",
            "currency",
            "period",
            "amount_minor",
            "rail",
            "destination",
            "status",
            "external_id",
            "attempts",
            "failure_reason",
            "created_at",
            "submitted_at",
            "settled_at",
        ]


class PayoutListApi(SelectorListApi):
    """Your payouts, newest first: one per currency and period once your payable reaches the threshold,
    with the rail it went on and its state (created, submitted, confirmed, failed, returned). Staff see
    everyone's and may filter by `user`."""

    queryset = Payout.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = PayoutSerializer
    filterset_fields = ["status", "rail", "currency", "period", "user"]
    ordering_fields = ["created_at", "amount_minor"]

    def select(self) -> QuerySet[Payout]:
        user = authenticated_user(self.request)
        if user.is_staff:
            return payouts.payouts_all()
        return payouts.payouts_of(user=user)

    @extend_schema(operation_id="payouts_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if "period" in request.query_params:  # a period spelled another way would silently match nothing
            payouts.period_check(request.query_params["period"], any_kind=True)
        return super().get(request, *args, **kwargs)


# Deposit addresses -------------------------------------------------------------------------------------


class DepositAddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = DepositAddress
        fields = ["id", "organisation", "address", "verified_at"]


def _organisation(user: User, organisation_id: int | None) -> Organisation:
    mine = organisations_of(user=user).order_by("id")
    organisation = mine.filter(pk=organisation_id).first() if organisation_id else mine.first()
    if organisation is None:
        raise NotFound("No such organisation among yours.", code="organisation_not_found")
    return organisation


class DepositAddressListCreateApi(SelectorListApi):
    """Wallets your organisation tops up its prepaid balance from, on chain. Register one by signing
    (EIP-191 personal_sign) the message from `GET /api/v1/deposit-addresses/message?address=...` with
    that wallet; then send the stablecoin to the platform's deposit address from it, and each transfer
    is credited once it is CHAIN_CONFIRMATIONS blocks deep."""

    queryset = DepositAddress.objects.none()
    permission_classes = [IsAuthenticated, KeyScope]
    serializer_class = DepositAddressSerializer

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "DepositAddressCreateInput"

        address = serializers.CharField(max_length=42)
        signature = serializers.CharField(max_length=200)
        organisation = serializers.IntegerField(required=False, allow_null=True)

    def select(self) -> QuerySet[DepositAddress]:
        user = authenticated_user(self.request)
        return DepositAddress.objects.filter(organisation__in=organisations_of(user=user)).order_by("id")

    @extend_schema(operation_id="deposit_addresses_list")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=InputSerializer,
        responses={201: DepositAddressSerializer},
        operation_id="deposit_addresses_create",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticated_user(request)
        registered = funding.deposit_address_register(
            organisation=_organisation(user, data.validated_data.get("organisation")),
            address=data.validated_data["address"],
            signature=data.validated_data["signature"],
            user=user,
        )
        return Response(DepositAddressSerializer(registered).data, status=status.HTTP_201_CREATED)


class DepositMessageApi(APIView):
    """The message a wallet signs to be registered as your organisation's, and where to send deposits."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(
        parameters=[
            OpenApiParameter("address", OpenApiTypes.STR, required=True, description="the paying wallet"),
            OpenApiParameter("organisation", OpenApiTypes.INT, required=False),
        ],
        responses=inline_serializer(
            name="DepositMessage",
            fields={
                "message": serializers.CharField(),
                "deposit_to": serializers.CharField(allow_null=True),
                "token": serializers.CharField(allow_null=True),
                "chain_id": serializers.IntegerField(allow_null=True),
            },
        ),
        operation_id="deposit_addresses_message",
    )
    def get(self, request: Request) -> Response:
        address = request.query_params.get("address", "")
        raw_organisation = request.query_params.get("organisation", "")
        if raw_organisation and not raw_organisation.isdigit():
            raise ApiError("organisation is an organisation id.", code="validation_error")
        from eth_utils import is_address

        if not is_address(address):
            raise ApiError("Name the paying wallet: ?address=0x...", code="invalid_address")
        organisation = _organisation(authenticated_user(request), int(raw_organisation or 0) or None)
        body: dict[str, Any] = {
            "message": funding.deposit_message(organisation=organisation, address=address),
            "deposit_to": None,
            "token": None,
            "chain_id": None,
        }
        if funding.deposits_configured():
            try:
                from royalties.chain_client import chain

                client = chain()
                body.update(
                    deposit_to=funding.deposit_address(),
                    token=str(client.token.address),
                    chain_id=client.chain_id,
                )
            except ChainError:
                pass  # the chain is unreachable now; the message is still valid
        return Response(body)

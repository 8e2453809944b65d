"""Accepting licence terms over HTTP: the grant and its licence fee in one call (royalties.licences)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from accounts.permissions import authenticated_user
from catalog.apis import GrantListApi, GrantSerializer
from catalog.models import Offer
from catalog.selectors import offer_get_readable
from common.problems import NotFound
from royalties import licences


class GrantListCreateApi(GrantListApi):
    """Grants you hold or that were made on your works; accept an offer version (creates a grant and
    pays its licence fee from your organisation's prepaid balance: 402 and no grant when it is short)."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "GrantListCreateInput"

        offer = serializers.IntegerField(min_value=1, max_value=2**63 - 1)

    @extend_schema(
        request=InputSerializer,
        responses={201: GrantSerializer, 200: GrantSerializer},
        operation_id="grants_create",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            offer = offer_get_readable(
                user=request.user if isinstance(request.user, User) else None,
                offer_id=data.validated_data["offer"],
            )
        except Offer.DoesNotExist:
            raise NotFound(code="offer_not_found") from None
        acceptance = licences.licence_accept(offer=offer, user=authenticated_user(request))
        return Response(
            GrantSerializer(acceptance.grant).data,
            status=status.HTTP_201_CREATED if acceptance.created else status.HTTP_200_OK,
        )

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, Membership, Scope
from accounts.permissions import KeyScope, SessionOnly, authenticated_user
from accounts.selectors import api_keys_visible_to, organisations_of
from accounts.services import api_key_create, api_key_revoke
from common.apis import SelectorListApi
from common.problems import NotFound


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        email = serializers.EmailField()
        role = serializers.CharField()
        display_name = serializers.CharField()
        organisations = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=OutputSerializer, operation_id="me_retrieve")
    def get(self, request: Request) -> Response:
        user = authenticated_user(request)
        data = {
            "id": user.pk,
            "username": user.username,
            "email": user.email,
            "role": user.role,
            "display_name": user.display_name,
            "organisations": [
                {"id": o.pk, "name": o.name, "slug": o.slug} for o in organisations_of(user=user)
            ],
        }
        return Response(self.OutputSerializer(data).data)


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "organisation",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "is_active",
        ]


class ApiKeyListCreateApi(SelectorListApi):
    """List the keys you can see; create a key (from a logged-in session only). The secret is shown once."""

    queryset = ApiKey.objects.none()
    permission_classes = [IsAuthenticated, SessionOnly]
    serializer_class = ApiKeyOutputSerializer
    ordering_fields = ["created_at", "last_used_at", "name"]
    filterset_fields = ["organisation"]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyListCreateInput"

        name = serializers.CharField(max_length=80)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False
        )
        organisation = serializers.IntegerField(required=False, allow_null=True)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

    class CreatedSerializer(ApiKeyOutputSerializer):
        secret = serializers.CharField(
            read_only=True, help_text="The key itself. Shown only in this response."
        )

        class Meta(ApiKeyOutputSerializer.Meta):
            fields = [*ApiKeyOutputSerializer.Meta.fields, "secret"]

    def select(self) -> Any:
        return api_keys_visible_to(user=authenticated_user(self.request)).select_related("organisation")

    @extend_schema(
        request=InputSerializer, responses={201: CreatedSerializer}, operation_id="api_keys_create"
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organisation = None
        if data.validated_data.get("organisation") is not None:
            organisation = (
                organisations_of(user=authenticated_user(request))
                .filter(pk=data.validated_data["organisation"])
                .first()
            )
            if organisation is None:
                raise NotFound("No such organisation among yours.", code="organisation_not_found")
        issued = api_key_create(
            user=authenticated_user(request),
            name=data.validated_data["name"],
            scopes=data.validated_data["scopes"],
            organisation=organisation,
            expires_at=data.validated_data.get("expires_at"),
        )
        body = dict(self.CreatedSerializer(issued.api_key).data)
        body["secret"] = issued.secret
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    """Revoke a key: the next request made with it gets 401."""

    permission_classes = [IsAuthenticated, SessionOnly, KeyScope]

    @extend_schema(request=None, responses=ApiKeyOutputSerializer, operation_id="api_keys_revoke")
    def post(self, request: Request, key_id: int) -> Response:
        api_key = get_object_or_404(api_keys_visible_to(user=authenticated_user(request)), pk=key_id)
        may_revoke = api_key.user_id == authenticated_user(request).pk or (
            api_key.organisation_id is not None
            and Membership.objects.filter(
                organisation_id=api_key.organisation_id,
                user=authenticated_user(request),
                role=Membership.MemberRole.OWNER,
            ).exists()
        )
        if not may_revoke:
            raise NotFound(code="api_key_not_found")
        return Response(ApiKeyOutputSerializer(api_key_revoke(api_key=api_key)).data)

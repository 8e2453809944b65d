from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import payout_identity, security
from accounts.models import ApiKey, Membership, PayoutProfile, Scope, SecurityEvent
from accounts.permissions import KeyScope, SessionOnly, authenticated_user
from accounts.selectors import api_keys_visible_to, organisations_of, security_events_of
from accounts.services import api_key_create, api_key_revoke, api_key_rotate
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
        if Scope.ACCESS in data.validated_data["scopes"]:
            security.require_strong_session(
                request=request._request, user=authenticated_user(request), action="create an access key"
            )
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
        revoked = api_key_revoke(api_key=api_key, by=authenticated_user(request))
        return Response(ApiKeyOutputSerializer(revoked).data)


# Payout identities -------------------------------------------------------------------------------------


class SessionOnlyForChanges(SessionOnly):
    """Reading with an API key is fine; changing where money goes needs a logged-in person."""

    message = "Payout settings are changed from a logged-in session, not with an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in ("GET", "HEAD", "OPTIONS") or super().has_permission(request, view)


class PayoutProfileSerializer(serializers.Serializer):
    rail = serializers.ChoiceField(choices=PayoutProfile.Rail.choices)
    rails = serializers.ListField(
        child=serializers.DictField(), help_text="Each rail, whether you may choose it now, and why not."
    )
    stripe = serializers.DictField()
    wallet = serializers.DictField()
    updated_at = serializers.DateTimeField()


def payout_profile_body(profile: PayoutProfile) -> dict[str, Any]:
    return {
        "rail": profile.rail,
        "rails": [
            {"rail": r.rail, "ready": r.ready, "reason": r.reason}
            for r in payout_identity.rail_readiness(profile=profile)
        ],
        "stripe": {
            "configured": payout_identity.stripe_enabled(),
            "account_id": profile.stripe_account_id,
            "payouts_enabled": profile.stripe_payouts_enabled,
            "details_submitted": profile.stripe_details_submitted,
        },
        "wallet": {
            "address": profile.wallet_address,
            "verified_at": profile.wallet_verified_at.isoformat() if profile.wallet_verified_at else None,
        },
        "updated_at": profile.updated_at.isoformat(),
    }


class PayoutProfileApi(APIView):
    """How you are paid: the rail you chose, and your Stripe account and wallet. Choose a rail with PUT;
    a rail whose identity is not ready (no Stripe account with payouts enabled, no verified wallet) is
    refused with 409 `rail_not_ready`."""

    permission_classes = [IsAuthenticated, SessionOnlyForChanges, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PayoutProfileInput"

        rail = serializers.ChoiceField(choices=PayoutProfile.Rail.choices)

    @extend_schema(responses=PayoutProfileSerializer, operation_id="payout_profile_retrieve")
    def get(self, request: Request) -> Response:
        profile = payout_identity.payout_profile_get_or_create(user=authenticated_user(request))
        return Response(payout_profile_body(profile))

    @extend_schema(
        request=InputSerializer, responses=PayoutProfileSerializer, operation_id="payout_profile_update"
    )
    def put(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        security.require_strong_session(
            request=request._request, user=authenticated_user(request), action="change where you are paid"
        )
        profile = payout_identity.payout_profile_rail_set(
            user=authenticated_user(request), rail=data.validated_data["rail"]
        )
        return Response(payout_profile_body(profile))


class WalletChallengeCreateApi(APIView):
    """A message to sign with the wallet you want paid to (EIP-191 personal_sign). It names you, this
    site, a nonce and an expiry; send the signature to POST /api/v1/payout-profile/wallet before then."""

    permission_classes = [IsAuthenticated, SessionOnly]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WalletChallenge"

        nonce = serializers.CharField()
        message = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=None, responses={201: OutputSerializer}, operation_id="wallet_challenge_create")
    def post(self, request: Request) -> Response:
        security.require_strong_session(
            request=request._request, user=authenticated_user(request), action="link a payout wallet"
        )
        challenge = payout_identity.wallet_challenge_create(
            user=authenticated_user(request), domain=request.get_host()
        )
        return Response(self.OutputSerializer(challenge).data, status=status.HTTP_201_CREATED)


class WalletLinkApi(APIView):
    """Link the wallet that signed your challenge. The address is stored only if the signature recovers
    to it; a challenge links once and expires (409 `challenge_used`, 400 `challenge_expired`,
    400 `wrong_signer`)."""

    permission_classes = [IsAuthenticated, SessionOnly]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WalletLinkInput"

        nonce = serializers.CharField(max_length=64)
        address = serializers.CharField(max_length=42)
        signature = serializers.CharField(max_length=140)

    @extend_schema(request=InputSerializer, responses=PayoutProfileSerializer, operation_id="wallet_link")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        security.require_strong_session(
            request=request._request, user=authenticated_user(request), action="link a payout wallet"
        )
        profile = payout_identity.wallet_link(user=authenticated_user(request), **data.validated_data)
        return Response(payout_profile_body(profile))


# Account security ------------------------------------------------------------------------------------


class ReauthenticateApi(APIView):
    """Confirm your password (and authenticator code, when two-factor is on) before a sensitive change:
    choosing a payout rail, linking a wallet, or creating or rotating a key with the `access` scope. The
    confirmation lasts REAUTH_WINDOW_S (10 minutes) in this session."""

    permission_classes = [IsAuthenticated, SessionOnly]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ReauthenticateInput"

        password = serializers.CharField(max_length=200)
        code = serializers.RegexField(r"^\d{6}$", required=False, default="")

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Reauthenticated"

        valid_for_s = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer, operation_id="reauthenticate")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        security.reauthenticate(
            request=request._request,
            user=authenticated_user(request),
            password=data.validated_data["password"],
            code=data.validated_data["code"],
        )
        return Response({"valid_for_s": settings.REAUTH_WINDOW_S})


class SecurityEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = SecurityEvent
        fields = ["id", "kind", "detail", "ip_address", "created_at"]


class SecurityLogListApi(SelectorListApi):
    """Your account's security log, newest first: logins and failed logins, keys created, rotated and
    revoked, payout-destination changes, claim decisions, password and two-factor changes."""

    queryset = SecurityEvent.objects.none()
    serializer_class = SecurityEventSerializer
    filterset_fields = ["kind"]

    def select(self) -> Any:
        return security_events_of(user=authenticated_user(self.request))


class ApiKeyRotateApi(APIView):
    """Replace a key: a new key with the same name, scopes and organisation (its secret shown once), while
    the old one keeps working for `overlap_s` seconds (default a day, at most a week) and then expires."""

    permission_classes = [IsAuthenticated, SessionOnly]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyRotateInput"

        overlap_s = serializers.IntegerField(
            min_value=0, max_value=settings.API_KEY_ROTATION_MAX_OVERLAP_S, required=False
        )

    @extend_schema(
        request=InputSerializer,
        responses={201: ApiKeyListCreateApi.CreatedSerializer},
        operation_id="api_keys_rotate",
    )
    def post(self, request: Request, key_id: int) -> Response:
        user = authenticated_user(request)
        api_key = get_object_or_404(ApiKey.objects.filter(user=user), pk=key_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if Scope.ACCESS in api_key.scopes:
            security.require_strong_session(
                request=request._request, user=user, action="rotate an access key"
            )
        overlap = data.validated_data.get("overlap_s", settings.API_KEY_ROTATION_OVERLAP_S)
        issued = api_key_rotate(api_key=api_key, by=user, overlap=timedelta(seconds=overlap))
        body = dict(ApiKeyListCreateApi.CreatedSerializer(issued.api_key).data)
        body["secret"] = issued.secret
        return Response(body, status=status.HTTP_201_CREATED)

"""Consent and revocation: a creator withdraws (or restores) consent for a use of a work, or revokes a
licence; licensees read the notices about their licences."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import KeyScope, authenticated_user
from catalog import consent, selectors
from catalog.apis import GrantSerializer
from catalog.models import ConsentWithdrawal, GrantsEnd, LicenseeNotice, UseClass


class ConsentWithdrawalSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentWithdrawal
        fields = ["id", "work", "use_class", "grants_end", "reason", "created_at", "restored_at"]


class LicenseeNoticeSerializer(serializers.ModelSerializer):
    class Meta:
        model = LicenseeNotice
        fields = ["id", "grant", "kind", "use_class", "message", "effective_at", "created_at"]


class WorkConsentWithdrawApi(APIView):
    """Withdraw consent for one use of your work: no new access for it from this request on (every route,
    and the published RSL, robots.txt and TDMRep say so); licences already paid for keep it to the end of
    their paid term unless `grants_end` is `now`. Each licensee gets a notice."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        use = serializers.ChoiceField(choices=UseClass.choices)
        grants_end = serializers.ChoiceField(choices=GrantsEnd.choices, default=GrantsEnd.TERM_END)
        reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "ConsentWithdrawInput"

    @extend_schema(request=InputSerializer, responses={201: ConsentWithdrawalSerializer})
    def post(self, request: Request, work_id: int) -> Response:
        user = authenticated_user(request)
        work = selectors.work_get_managed(user=user, work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        withdrawal = consent.consent_withdraw(
            work=work,
            user=user,
            use_class=data.validated_data["use"],
            grants_end=data.validated_data["grants_end"],
            reason=data.validated_data["reason"],
        )
        return Response(ConsentWithdrawalSerializer(withdrawal).data, status=201)


class WorkConsentRestoreApi(APIView):
    """Give consent for a withdrawn use again."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        use = serializers.ChoiceField(choices=UseClass.choices)

        class Meta:
            ref_name = "ConsentRestoreInput"

    @extend_schema(request=InputSerializer, responses=ConsentWithdrawalSerializer)
    def post(self, request: Request, work_id: int) -> Response:
        user = authenticated_user(request)
        work = selectors.work_get_managed(user=user, work_id=work_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        withdrawal = consent.consent_restore(work=work, user=user, use_class=data.validated_data["use"])
        return Response(ConsentWithdrawalSerializer(withdrawal).data)


class GrantRevokeApi(APIView):
    """The work's manager ends a licence at once; the licensee gets a notice."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "GrantRevokeInput"

    @extend_schema(request=InputSerializer, responses=GrantSerializer)
    def post(self, request: Request, grant_id: int) -> Response:
        user = authenticated_user(request)
        grant = selectors.grant_get_visible(user=user, grant_id=grant_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grant = consent.grant_revoke(grant=grant, user=user, reason=data.validated_data["reason"])
        return Response(GrantSerializer(grant).data)


class NoticeListApi(APIView):
    """What you (or your organisation) were told about your licences: consent withdrawn, revocations."""

    permission_classes = [IsAuthenticated, KeyScope]

    @extend_schema(responses=LicenseeNoticeSerializer(many=True), operation_id="notices_list")
    def get(self, request: Request) -> Response:
        notices = consent.notices_of(user=authenticated_user(request))[:200]
        return Response(LicenseeNoticeSerializer(notices, many=True).data)

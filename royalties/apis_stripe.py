"""Stripe over HTTP: the webhook endpoint, Connect onboarding, and prepaid top-ups."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import KeyScope, SessionOnly, authenticated_user
from common import currency
from common.money import Money
from common.problems import problem_response
from royalties import stripe_services, webhooks


def site_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def onboarding_urls() -> tuple[str, str]:
    """Where Stripe sends the user back: the payout settings page (done or left), or a page that makes a
    fresh link (the old one expired)."""
    return (
        site_url(reverse("dashboard:payout-settings") + "?stripe=return"),
        site_url(reverse("dashboard:payout-stripe-refresh")),
    )


class StripeWebhookApi(APIView):
    """Stripe's events, signed with the endpoint secret (the `Stripe-Signature` header over the raw
    body, at most five minutes old). A bad signature: 400 and nothing stored. A redelivered event: 200,
    nothing done again."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes: list[type] = []

    # Only Stripe calls this, authenticated by the signature, so it is not part of the client API schema
    # (docs/stripe.md describes it).
    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        try:
            received = webhooks.stripe_webhook_receive(
                payload=request._request.body, signature_header=request.headers.get("Stripe-Signature", "")
            )
        except webhooks.WebhookFailed:
            return problem_response(
                500, "webhook_processing_failed", "The event was stored and will be processed on redelivery."
            )
        return Response({"received": True, "duplicate": received.duplicate})


class StripeOnboardingStartApi(APIView):
    """Start (or resume) Stripe Connect onboarding: makes your Express account on the first call and
    answers a single-use link to Stripe's onboarding. 409 `stripe_not_configured` when Stripe is off."""

    permission_classes = [IsAuthenticated, SessionOnly]

    @extend_schema(
        request=None,
        responses={201: inline_serializer("StripeOnboarding", {"url": serializers.URLField()})},
        operation_id="stripe_onboarding_start",
    )
    def post(self, request: Request) -> Response:
        return_url, refresh_url = onboarding_urls()
        url = stripe_services.stripe_onboarding_start(
            user=authenticated_user(request), return_url=return_url, refresh_url=refresh_url
        )
        return Response({"url": url}, status=status.HTTP_201_CREATED)


class TopUpOutputSerializer(serializers.Serializer):
    reference = serializers.CharField()
    method = serializers.CharField()
    organisation = serializers.IntegerField(source="organisation.pk")
    amount_minor = serializers.IntegerField(source="amount.amount_minor")
    currency = serializers.CharField(source="amount.currency")
    payment_intent_id = serializers.CharField()
    client_secret = serializers.CharField(help_text="For Stripe.js to confirm the PaymentIntent.")
    checkout_url = serializers.CharField(help_text="Send the payer here (Checkout).")
    checkout_session_id = serializers.CharField()


class TopUpCreateApi(APIView):
    """Top up your organisation's prepaid balance through Stripe: `checkout` answers a Stripe-hosted
    payment page, `payment_intent` a client secret for Stripe.js. The balance is credited when Stripe's
    webhook says the payment succeeded. Send an Idempotency-Key header to make retries safe.
    409 `stripe_not_configured` when Stripe is off."""

    permission_classes = [IsAuthenticated, KeyScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TopUpCreateInput"

        amount_minor = serializers.IntegerField(min_value=1)
        currency = serializers.ChoiceField(choices=currency.SUPPORTED)
        method = serializers.ChoiceField(choices=stripe_services.METHODS, default="payment_intent")
        organisation = serializers.IntegerField(required=False, allow_null=True)

    @extend_schema(
        request=InputSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={201: TopUpOutputSerializer},
        operation_id="topups_create",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticated_user(request)
        values: dict[str, Any] = data.validated_data
        organisation = stripe_services.topup_organisation(
            user=user, organisation_id=values.get("organisation")
        )
        back = site_url(reverse("dashboard:topup-stripe"))
        started = stripe_services.topup_start(
            user=user,
            organisation=organisation,
            amount=Money(values["amount_minor"], values["currency"]),
            method=values["method"],
            idempotency_key=request.headers.get("Idempotency-Key"),
            success_url=f"{back}?topup=done",
            cancel_url=f"{back}?topup=cancelled",
        )
        return Response(TopUpOutputSerializer(started).data, status=status.HTTP_201_CREATED)

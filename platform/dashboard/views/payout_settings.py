"""Payout settings (creators and fans): connect Stripe, link a wallet by signing a message, choose the
rail. And a vendor's Stripe top-up. Thin views over `accounts.payout_identity` and
`royalties.stripe_services`; a refusal is shown next to the form it concerns."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import payout_identity
from accounts.models import PayoutProfile, Role, User, WalletChallenge
from accounts.views import strong_session_redirect
from common import clock, currency
from common.money import Money
from common.problems import ApiError
from dashboard.forms import attach_problem, to_minor
from dashboard.web import current_user
from royalties import stripe_services
from royalties.apis_stripe import onboarding_urls
from royalties.rails import stripe as stripe_gateway

PAYEE_ROLES = (Role.CREATOR, Role.FAN)
WALLET_FIELDS = {
    "invalid_address": "address",
    "wrong_signer": "signature",
    "invalid_signature": "signature",
}


def _payee_only(request: HttpRequest) -> HttpResponse | None:
    if current_user(request).role in PAYEE_ROLES:
        return None
    return render(
        request,
        "dashboard/not_for_role.html",
        {"what": "Payout settings", "role": "creator and fan"},
        status=403,
    )


def _payee_with_fresh_session(request: HttpRequest) -> HttpResponse | None:
    """Where a user is paid changes only for a payee who signed in (or confirmed) within the last minutes."""
    return _payee_only(request) or strong_session_redirect(
        request, action="change where you are paid", back=reverse("dashboard:payout-settings")
    )


class RailForm(forms.Form):
    rail = forms.ChoiceField(choices=PayoutProfile.Rail.choices, widget=forms.RadioSelect, label="Pay me by")


class WalletForm(forms.Form):
    nonce = forms.CharField(widget=forms.HiddenInput, max_length=64)
    address = forms.CharField(
        max_length=42,
        label="Wallet address",
        help_text="The address that signed, 0x followed by 40 hex digits.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    signature = forms.CharField(
        max_length=400,
        label="Signature",
        help_text=(
            "What your wallet gives back after signing: 0x followed by 130 hex digits. Paste it as it is; "
            "spaces and line breaks are ignored."
        ),
        widget=forms.Textarea(
            attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off", "class": "signature-input"}
        ),
    )

    def clean_signature(self) -> str:
        return "".join(self.cleaned_data["signature"].split())


class ManualPayeeForm(forms.Form):
    """Where the operator sends a manual payout: a bank account, or an address for a transfer by email."""

    method = forms.ChoiceField(
        choices=[("bank", "Bank account (IBAN)"), ("email", "Email address for a manual transfer")],
        widget=forms.RadioSelect,
        label="Send my manual payouts to",
    )
    holder = forms.CharField(max_length=140, label="Account holder's name")
    iban = forms.CharField(
        max_length=42,
        required=False,
        label="IBAN",
        help_text="For a bank account, e.g. DE89 3704 0044 0532 0130 00.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    bic = forms.CharField(
        max_length=14, required=False, label="BIC", help_text="e.g. COBADEFFXXX; not needed for most banks"
    )
    email = forms.EmailField(
        max_length=254, required=False, label="Payment email", help_text="For a transfer by email."
    )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("method") == "bank" and not cleaned.get("iban") and not self.has_error("iban"):
            self.add_error("iban", "Enter the IBAN of the account to pay.")
        if cleaned.get("method") == "email" and not cleaned.get("email") and not self.has_error("email"):
            self.add_error("email", "Enter the email address to pay.")
        return cleaned


MANUAL_FIELDS = {
    "invalid_iban": "iban",
    "invalid_bic": "bic",
    "invalid_email": "email",
    "invalid_holder": "holder",
    "invalid_method": "method",
}


def _open_challenge(user: User, nonce: str | None) -> WalletChallenge | None:
    if not nonce:
        return None
    return WalletChallenge.objects.filter(
        user=user, nonce=nonce, used_at__isnull=True, expires_at__gt=clock.now()
    ).first()


def _settings_page(
    request: HttpRequest,
    profile: PayoutProfile,
    *,
    rail_form: RailForm | None = None,
    wallet_form: WalletForm | None = None,
    challenge: WalletChallenge | None = None,
    manual_form: ManualPayeeForm | None = None,
    status: int = 200,
) -> HttpResponse:
    readiness = {row.rail: row for row in payout_identity.rail_readiness(profile=profile)}
    rail_form = rail_form or RailForm(initial={"rail": profile.rail})
    if wallet_form is None and challenge is not None:
        wallet_form = WalletForm(initial={"nonce": challenge.nonce})
    return render(
        request,
        "dashboard/payout_settings/settings.html",
        {
            "profile": profile,
            "rail_rows": [(choice, readiness[choice.data["value"]]) for choice in rail_form["rail"]],
            "rail_form": rail_form,
            "wallet_form": wallet_form,
            "challenge": challenge,
            "stripe_on": stripe_gateway.is_configured(),
            "manual_form": manual_form
            or ManualPayeeForm(
                initial={"method": profile.manual_method or "bank", "holder": profile.manual_holder}
            ),
        },
        status=status,
    )


@login_required
@require_POST
def payout_manual(request: HttpRequest) -> HttpResponse:
    """The payee's details for manual payouts (bank account or payment email): validated, then stored for
    the operator; like every payout destination, a change needs a strong session and is mailed."""
    refused = _payee_only(request)
    if refused:
        return refused
    weak = strong_session_redirect(
        request, action="change where you are paid", back=reverse("dashboard:payout-settings") + "#manual"
    )
    if weak:
        return weak
    user = current_user(request)
    form = ManualPayeeForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            profile = payout_identity.manual_payee_set(
                user=user,
                method=data["method"],
                holder=data["holder"],
                iban=data["iban"] if data["method"] == "bank" else "",
                bic=data["bic"] if data["method"] == "bank" else "",
                email=data["email"] if data["method"] == "email" else "",
            )
        except ApiError as error:
            attach_problem(form, error, MANUAL_FIELDS)
        else:
            messages.success(request, f"Manual payouts will go to {profile.manual_summary}.")
            return redirect(reverse("dashboard:payout-settings") + "#manual")
    profile = payout_identity.payout_profile_get_or_create(user=user)
    return _settings_page(request, profile, manual_form=form, status=400)


@login_required
@require_GET
def payout_settings(request: HttpRequest) -> HttpResponse:
    refused = _payee_only(request)
    if refused:
        return refused
    user = current_user(request)
    profile = payout_identity.payout_profile_get_or_create(user=user)
    if request.GET.get("stripe") == "return" and profile.stripe_account_id:
        # Back from Stripe: read the account now rather than wait for the webhook.
        try:
            profile = stripe_services.stripe_account_refresh(user=user)
        except ApiError as error:
            messages.warning(request, f"Could not read your Stripe account just now: {error.detail}")
        if profile.stripe_payouts_enabled:
            messages.success(request, "Stripe has enabled payouts to your account.")
        else:
            messages.info(
                request, "Stripe is still checking your details; this page updates when it is done."
            )
    return _settings_page(request, profile, challenge=_open_challenge(user, request.GET.get("challenge")))


@login_required
@require_POST
def payout_rail(request: HttpRequest) -> HttpResponse:
    refused = _payee_with_fresh_session(request)
    if refused:
        return refused
    user = current_user(request)
    form = RailForm(request.POST)
    if form.is_valid():
        try:
            profile = payout_identity.payout_profile_rail_set(user=user, rail=form.cleaned_data["rail"])
        except ApiError as error:
            attach_problem(form, error, {"rail_not_ready": "rail", "invalid_rail": "rail"})
        else:
            messages.success(request, f"Payouts will be sent by {profile.get_rail_display()}.")
            return redirect("dashboard:payout-settings")
    profile = payout_identity.payout_profile_get_or_create(user=user)
    return _settings_page(request, profile, rail_form=form, status=400)


def _to_stripe(request: HttpRequest) -> HttpResponse:
    return_url, refresh_url = onboarding_urls()
    try:
        url = stripe_services.stripe_onboarding_start(
            user=current_user(request), return_url=return_url, refresh_url=refresh_url
        )
    except ApiError as error:
        messages.error(request, str(error.detail))
        return redirect("dashboard:payout-settings")
    return redirect(url)


@login_required
@require_POST
def payout_stripe_connect(request: HttpRequest) -> HttpResponse:
    """Make (once) the user's Express account and send them to Stripe's onboarding."""
    return _payee_with_fresh_session(request) or _to_stripe(request)


@login_required
@require_GET
def payout_stripe_refresh(request: HttpRequest) -> HttpResponse:
    """Stripe sends the user here when an onboarding link expired: make a fresh one and go back."""
    return _payee_only(request) or _to_stripe(request)


@login_required
@require_POST
def payout_wallet_challenge(request: HttpRequest) -> HttpResponse:
    refused = _payee_with_fresh_session(request)
    if refused:
        return refused
    challenge = payout_identity.wallet_challenge_create(user=current_user(request), domain=request.get_host())
    return redirect(f"{reverse('dashboard:payout-settings')}?challenge={challenge.nonce}#wallet")


@login_required
@require_POST
def payout_wallet_link(request: HttpRequest) -> HttpResponse:
    refused = _payee_with_fresh_session(request)
    if refused:
        return refused
    user = current_user(request)
    form = WalletForm(request.POST)
    challenge = _open_challenge(user, request.POST.get("nonce"))
    if form.is_valid():
        try:
            profile = payout_identity.wallet_link(user=user, **form.cleaned_data)
        except ApiError as error:
            if error.problem_code in {"challenge_used", "challenge_expired", "challenge_not_found"}:
                messages.error(request, f"{error.detail} Press “Link a wallet” again.")
                return redirect("dashboard:payout-settings")
            attach_problem(form, error, WALLET_FIELDS)
        else:
            messages.success(request, f"Wallet {profile.wallet_address} is linked.")
            return redirect("dashboard:payout-settings")
    profile = payout_identity.payout_profile_get_or_create(user=user)
    return _settings_page(request, profile, wallet_form=form, challenge=challenge, status=400)


# Vendor top-up -----------------------------------------------------------------------------------------


class TopUpForm(forms.Form):
    amount = forms.DecimalField(
        min_value=Decimal("1"), max_digits=12, decimal_places=2, label="Amount", help_text="For example 50.00"
    )
    currency = forms.ChoiceField(
        choices=[(c, c) for c in currency.SUPPORTED], initial=settings.DEFAULT_CURRENCY
    )
    organisation = forms.TypedChoiceField(coerce=int, label="Organisation")
    reference = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        organisations = list(user.organisations.order_by("id").values_list("id", "name"))
        field = self.fields["organisation"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = organisations
        if len(organisations) == 1:
            field.widget = forms.HiddenInput()
            field.initial = organisations[0][0]
        self.fields["reference"].initial = uuid.uuid4().hex

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "amount" in data and "currency" in data:
            data["amount_minor"] = to_minor(data["amount"], data["currency"], "amount")
        return data


@login_required
@require_http_methods(["GET", "POST"])
def topup_stripe(request: HttpRequest) -> HttpResponse:
    """A vendor's card top-up: Stripe Checkout, then back to the balance page; the webhook credits it."""
    user = current_user(request)
    if user.role != Role.VENDOR:
        return render(
            request, "dashboard/not_for_role.html", {"what": "Topping up", "role": "AI vendor"}, status=403
        )
    stripe_on = stripe_gateway.is_configured()
    form = TopUpForm(request.POST or None, user=user)
    if request.method == "POST" and stripe_on and form.is_valid():
        data = form.cleaned_data
        back = request.build_absolute_uri(reverse("dashboard:topup-stripe"))
        try:
            organisation = stripe_services.topup_organisation(user=user, organisation_id=data["organisation"])
            started = stripe_services.topup_start(
                user=user,
                organisation=organisation,
                amount=Money(data["amount_minor"], data["currency"]),
                method="checkout",
                idempotency_key=data["reference"],
                success_url=f"{back}?topup=done",
                cancel_url=f"{back}?topup=cancelled",
            )
        except ApiError as error:
            attach_problem(form, error, {"invalid_amount": "amount", "unsupported_currency": "currency"})
        else:
            return redirect(started.checkout_url)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "dashboard/payout_settings/topup.html",
        {"form": form, "stripe_on": stripe_on, "outcome": request.GET.get("topup", "")},
        status=status,
    )

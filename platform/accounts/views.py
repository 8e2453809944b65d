from collections.abc import Callable
from functools import wraps
from typing import Any

import pyotp
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordChangeView, PasswordResetConfirmView
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_http_methods, require_POST

from accounts import ratelimits, security
from accounts.forms import ReauthenticateForm, SignupForm, TotpCodeForm
from accounts.models import SecurityEvent, User
from accounts.selectors import security_events_of
from accounts.services import (
    email_verification_send,
    login_lockout_notify,
    signup_attempt_on_taken_identity,
    user_create,
    user_email_verify,
    user_for_verification_link,
)
from common.problems import ApiError

NEXT_AFTER_SIGNUP = "next_after_signup"


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Every well-formed sign-up gets the same answer ("check your email"), whether the username or the
    address is new or taken: only the address's owner learns, by mail, what happened. The account can
    sign in once the emailed link is followed."""
    form = SignupForm(request.POST or None)
    next_page = _safe_next(request, "")
    if next_page:  # where the new account goes once its email link signs it in (this browser only)
        request.session[NEXT_AFTER_SIGNUP] = next_page
    if request.method == "POST":
        usage = ratelimits.count(request, scope="signup_ip", key=f"ip:{ratelimits.client_ip(request)}")
        ratelimits.note(request, usage)
        if usage is not None and usage.limited:
            return render(
                request,
                "registration/login_locked.html",
                {"retry_after_s": usage.retry_after_s, "locked_out": False},
                status=429,
            )
    if request.method == "POST" and form.is_valid():
        email, username = form.cleaned_data["email"], form.cleaned_data["username"]
        email_taken = User.objects.filter(email__iexact=email).exists()
        username_taken = User.objects.filter(username__iexact=username).exists()
        if email_taken or username_taken:
            signup_attempt_on_taken_identity(email=email, username_taken=username_taken)
        else:
            try:
                user = user_create(
                    username=username,
                    email=email,
                    password=form.cleaned_data["password1"],
                    role=form.cleaned_data["role"],
                    display_name=form.cleaned_data["display_name"],
                    organisation_name=form.cleaned_data["organisation_name"],
                )
            except IntegrityError:  # taken meanwhile by a concurrent sign-up
                signup_attempt_on_taken_identity(email=email, username_taken=True)
            else:
                email_verification_send(user=user)
        return redirect("signup-done")
    return render(request, "registration/signup.html", {"form": form, "next": next_page})


def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/signup_done.html")


def verify_email(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The link from the confirmation mail: verifies the address and signs its owner in."""
    user = user_for_verification_link(uidb64=uidb64, token=token)
    if user is None or not user.is_active:
        return render(request, "registration/verify_email_invalid.html", status=400)
    user_email_verify(user=user)
    security.security_event_record(user=user, kind=SecurityEvent.Kind.EMAIL_VERIFIED, request=request)
    if security.has_two_factor(user):  # the link proves the address, not the second factor
        messages.success(request, "Your email address is confirmed. Log in with your authenticator code.")
        return redirect("login")
    next_page = str(request.session.get(NEXT_AFTER_SIGNUP) or "")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.pop(NEXT_AFTER_SIGNUP, None)
    messages.success(request, "Your email address is confirmed.")
    return redirect(next_page or "dashboard:home")


@login_required
@require_POST
def verify_email_resend(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    email_verification_send(user=user)
    messages.success(request, f"We sent a confirmation link to {user.email}.")
    return redirect(_safe_next(request, "/"))


class VerifyingPasswordResetConfirmView(PasswordResetConfirmView):
    """A password reset proves the user reads the address, so it verifies it too."""

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        user_email_verify(user=form.user)
        security.security_event_record(
            user=form.user, kind=SecurityEvent.Kind.PASSWORD_CHANGED, request=self.request, by="reset"
        )
        security.notify(
            user=form.user,
            subject="Your Tribute password was reset",
            body="The password of your Tribute account was just set through a reset link.",
        )
        return response


def login_throttled(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a login view (ours or the admin's) in the login limits: while an account's or an address's
    failures fill a tier, attempts are refused with 429 before the password is checked, so even the
    right password does not sign in until the tier's window ends. A failure that fills the last tier
    locks the account out and mails its owner a notice."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        refused = ratelimits.login_refusal(request)
        if refused is not None:
            ratelimits.note(request, refused)
            locked = render(
                request,
                "registration/login_locked.html",
                {"retry_after_s": refused.retry_after_s, "locked_out": refused.final_tier},
                status=429,
            )
            locked["Retry-After"] = str(refused.retry_after_s)
            return locked
        response = view(request, *args, **kwargs)
        username = str(request.POST.get("username", ""))
        # A login view answers a failed attempt by showing its form again (200); success redirects.
        if response.status_code == 200:
            now_locked = ratelimits.login_failed(request)
            named = User.objects.filter(username__iexact=username.strip()).first()
            if named is not None:
                kind = SecurityEvent.Kind.LOGIN_LOCKED if now_locked else SecurityEvent.Kind.LOGIN_FAILED
                security.security_event_record(user=named, kind=kind, request=request)
            if now_locked:
                login_lockout_notify(username=username)
        elif isinstance(request.user, User) and request.user.is_authenticated:
            security.security_event_record(user=request.user, kind=SecurityEvent.Kind.LOGIN, request=request)
        return response

    return wrapped


def _signed_in(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = str(request.POST.get("next") or request.GET.get("next") or "")
    allowed = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    return target if target and allowed else fallback


@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Turn two-factor authentication on (show a new secret, confirm it with a code) or off."""
    user = _signed_in(request)
    form = TotpCodeForm(request.POST or None)
    action = request.POST.get("action", "")
    uri = ""
    if request.method == "POST" and action == "begin":
        try:
            _, uri = security.totp_begin(user=user)
        except ApiError as exc:
            messages.error(request, str(exc.detail))
        form = TotpCodeForm()
    elif request.method == "POST" and form.is_valid():
        try:
            if action == "disable":
                security.totp_disable(user=user, code=form.cleaned_data["code"], request=request)
                messages.success(request, "Two-factor authentication is off.")
            else:
                security.totp_confirm(user=user, code=form.cleaned_data["code"], request=request)
                messages.success(request, "Two-factor authentication is on.")
            return redirect("two-factor")
        except ApiError as exc:
            form.add_error("code", str(exc.detail))
    device = security.totp_device_of(user=user)
    if device is not None and device.confirmed_at is None and not uri:
        uri = pyotp.TOTP(device.secret).provisioning_uri(name=user.email, issuer_name=security.ISSUER)
    return render(
        request,
        "registration/two_factor.html",
        {
            "form": form,
            "device": device,
            "uri": uri,
            "secret": device.secret if device is not None and device.confirmed_at is None else "",
            "staff_required": request.GET.get("required") == "staff",
        },
        status=400 if request.method == "POST" and form.errors else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def reauthenticate(request: HttpRequest) -> HttpResponse:
    """Confirm the password (and the authenticator code) before a sensitive change."""
    form = ReauthenticateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            security.reauthenticate(
                request=request,
                user=_signed_in(request),
                password=form.cleaned_data["password"],
                code=form.cleaned_data["code"],
            )
        except ApiError as exc:
            form.add_error(None, str(exc.detail))
        else:
            return redirect(_safe_next(request, "/dashboard/"))
    return render(
        request,
        "registration/reauthenticate.html",
        {"form": form, "next": _safe_next(request, "")},
        status=400 if form.errors else 200,
    )


class NotifyingPasswordChangeView(PasswordChangeView):
    """A changed password is logged and its owner told by mail."""

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        user = form.user
        security.security_event_record(
            user=user, kind=SecurityEvent.Kind.PASSWORD_CHANGED, request=self.request
        )
        security.notify(
            user=user,
            subject="Your Tribute password was changed",
            body="The password of your Tribute account was just changed.",
        )
        return response


def strong_session_redirect(request: HttpRequest, *, action: str, back: str) -> HttpResponse | None:
    """For dashboard pages: None when the session may make a sensitive change now; otherwise a redirect to
    set up two-factor or to confirm the password and code, returning to `back`."""
    try:
        security.require_strong_session(request=request, user=_signed_in(request), action=action)
    except ApiError as exc:
        messages.error(request, str(exc.detail))
        if exc.problem_code == "two_factor_required":
            return redirect("two-factor")
        return redirect(f"{reverse('reauthenticate')}?{urlencode({'next': back})}")
    return None


@login_required
def security_log(request: HttpRequest) -> HttpResponse:
    """The signed-in person's security log, newest first (the API's GET /api/v1/security-log)."""
    events = security_events_of(user=_signed_in(request))[:200]
    return render(request, "registration/security_log.html", {"events": events})

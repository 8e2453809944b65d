from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetConfirmView
from django.db import IntegrityError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import ratelimits
from accounts.forms import SignupForm
from accounts.models import User
from accounts.services import (
    email_verification_send,
    login_lockout_notify,
    signup_attempt_on_taken_identity,
    user_create,
    user_email_verify,
    user_for_verification_link,
)


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Every well-formed sign-up gets the same answer ("check your email"), whether the username or the
    address is new or taken: only the address's owner learns, by mail, what happened. The account can
    sign in once the emailed link is followed."""
    form = SignupForm(request.POST or None)
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
    return render(request, "registration/signup.html", {"form": form})


def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/signup_done.html")


def verify_email(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The link from the confirmation mail: verifies the address and signs its owner in."""
    user = user_for_verification_link(uidb64=uidb64, token=token)
    if user is None or not user.is_active:
        return render(request, "registration/verify_email_invalid.html", status=400)
    user_email_verify(user=user)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, "Your email address is confirmed.")
    return redirect("home")


@login_required
@require_POST
def verify_email_resend(request: HttpRequest) -> HttpResponse:
    if not Form(request.POST).is_valid():  # pragma: no cover - an empty form is always valid
        return redirect("home")
    user = request.user
    assert isinstance(user, User)
    email_verification_send(user=user)
    messages.success(request, f"We sent a confirmation link to {user.email}.")
    return redirect(request.POST.get("next") or "home")


class VerifyingPasswordResetConfirmView(PasswordResetConfirmView):
    """A password reset proves the user reads the address, so it verifies it too."""

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        user_email_verify(user=form.user)
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
        # A login view answers a failed attempt by showing its form again (200); success redirects.
        if response.status_code == 200 and ratelimits.login_failed(request):
            login_lockout_notify(username=str(request.POST.get("username", "")))
        return response

    return wrapped

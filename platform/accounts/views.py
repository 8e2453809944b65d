from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetConfirmView
from django.db import IntegrityError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import SignupForm
from accounts.models import User
from accounts.services import (
    email_verification_send,
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

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from accounts.models import Role, User
from accounts.security import totp_check


class SignupForm(UserCreationForm):
    email = forms.EmailField(help_text="Co-owner invitations and password resets go here.")
    role = forms.ChoiceField(
        choices=Role.choices,
        widget=forms.RadioSelect,
        help_text="Creators register works; fans make derivatives; AI vendors pay per access.",
    )
    display_name = forms.CharField(max_length=120, required=False, help_text="The name others see.")
    organisation_name = forms.CharField(max_length=120, required=False, help_text="AI vendors: your company.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "role", "display_name")

    def clean_username(self) -> str:
        # Whether the username is taken is not said here (that would enumerate accounts): the sign-up
        # view answers the same either way and tells the address's owner by mail.
        username: str = self.cleaned_data["username"]
        return username

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].lower()
        return email

    def validate_unique(self) -> None:
        """Uniqueness is the sign-up view's business (see clean_username)."""

    def _get_validation_exclusions(self) -> set[str]:
        # The model's case-insensitive email constraint would say the address is taken: not here either.
        return {*super()._get_validation_exclusions(), "email", "username"}  # type: ignore[misc]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("role") == Role.VENDOR and not cleaned.get("organisation_name"):
            self.add_error("organisation_name", "AI vendors sign up for an organisation: name it.")
        return cleaned


class LoginForm(AuthenticationForm):
    """The login form, with the authenticator code for accounts that turned two-factor on."""

    code = forms.CharField(
        required=False,
        max_length=10,
        label="Authenticator code",
        help_text="Only if you turned on two-factor authentication: the six digits your app shows.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if not totp_check(user=user, code=self.cleaned_data.get("code", "")):
            raise forms.ValidationError(
                "Enter the current six-digit code from your authenticator app.", code="invalid_code"
            )


class ReauthenticateForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    code = forms.CharField(
        required=False,
        max_length=10,
        label="Authenticator code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class TotpCodeForm(forms.Form):
    code = forms.CharField(
        max_length=10,
        label="Code from your app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's login asks for the authenticator code too."""

    code = LoginForm.base_fields["code"]

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if not totp_check(user=user, code=self.cleaned_data.get("code", "")):
            raise forms.ValidationError(
                "Enter the current six-digit code from your authenticator app.", code="invalid_code"
            )

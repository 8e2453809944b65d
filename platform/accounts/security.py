"""Account security: the security log, TOTP two-factor (pyotp), re-authentication before sensitive changes,
and the email notices of those changes.

A sensitive change (a payout destination, a key with the `access` scope) needs a session that confirmed
its password and a current authenticator code within REAUTH_WINDOW_S; staff need an authenticator to
reach operator pages (TWO_FACTOR_REQUIRED_FOR_STAFF).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import pyotp
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse

from accounts.models import SecurityEvent, TotpDevice, User
from common import clock
from common.problems import ApiError, Forbidden

REAUTH_SESSION_KEY = "tribute_reauthenticated_at"
ISSUER = "Tribute"


# The log -----------------------------------------------------------------------------------------------


def _address(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    from accounts.ratelimits import client_ip

    return client_ip(request)[:45]


def security_event_record(
    *, user: User, kind: str, request: HttpRequest | None = None, **detail: Any
) -> SecurityEvent:
    return SecurityEvent.objects.create(
        user=user, kind=kind, detail=detail, ip_address=_address(request), created_at=clock.now()
    )


def notify(*, user: User, subject: str, body: str) -> None:
    """Mail the account's owner about a change to its security (after the transaction commits)."""
    message = (
        f"{body}\n\nIf this was not you, change your password at once and tell the operator: "
        f"{settings.SITE_URL}/accounts/password_reset/\n"
    )
    transaction.on_commit(
        partial(send_mail, subject=subject, message=message, from_email=None, recipient_list=[user.email])
    )


# Two-factor --------------------------------------------------------------------------------------------


def totp_device_of(*, user: User) -> TotpDevice | None:
    return TotpDevice.objects.filter(user=user).first()


def has_two_factor(user: User) -> bool:
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def totp_begin(*, user: User) -> tuple[TotpDevice, str]:
    """Start (or restart) enrolment: a new secret, not yet confirmed. Returns the device and the
    otpauth:// URI an authenticator app reads (as a QR code or typed in)."""
    if has_two_factor(user):
        raise ApiError(
            "Two-factor authentication is already on.", code="two_factor_already_on", status_code=409
        )
    device, _ = TotpDevice.objects.update_or_create(
        user=user, defaults={"secret": pyotp.random_base32(), "confirmed_at": None, "last_used_step": 0}
    )
    uri = pyotp.TOTP(device.secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return device, uri


def _accept_code(device: TotpDevice, code: str) -> bool:
    """Whether `code` is the app's current code (one step of clock drift allowed), used once per step."""
    code = "".join(str(code).split())
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(device.secret)
    now = clock.now()
    for drift in (0, -1, 1):
        moment = datetime.fromtimestamp(now.timestamp() + drift * totp.interval, tz=now.tzinfo)
        if totp.verify(code, for_time=moment, valid_window=0):
            step = totp.timecode(moment)
            # Conditional update: a code is good once, however many requests race with it.
            return bool(
                TotpDevice.objects.filter(pk=device.pk, last_used_step__lt=step).update(last_used_step=step)
            )
    return False


@transaction.atomic
def totp_confirm(*, user: User, code: str, request: HttpRequest | None = None) -> TotpDevice:
    device = totp_device_of(user=user)
    if device is None or device.confirmed_at is not None:
        raise ApiError("Start two-factor enrolment first.", code="two_factor_not_started", status_code=409)
    if not _accept_code(device, code):
        raise ApiError("That code is not the current one from your app.", code="invalid_code")
    TotpDevice.objects.filter(pk=device.pk).update(confirmed_at=clock.now())
    device.refresh_from_db()
    security_event_record(user=user, kind=SecurityEvent.Kind.TWO_FACTOR_ENABLED, request=request)
    notify(
        user=user,
        subject="Two-factor authentication is on",
        body="Your Tribute account now asks for a code from your authenticator app.",
    )
    return device


def totp_check(*, user: User, code: str) -> bool:
    """A login or re-authentication code: True when the user has no authenticator or the code is good."""
    device = TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).first()
    return device is None or _accept_code(device, code)


@transaction.atomic
def totp_disable(*, user: User, code: str, request: HttpRequest | None = None) -> None:
    device = TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).first()
    if device is None:
        return
    if user.is_staff and settings.TWO_FACTOR_REQUIRED_FOR_STAFF:
        raise Forbidden("Staff accounts keep two-factor authentication on.", code="two_factor_required")
    if not _accept_code(device, code):
        raise ApiError("That code is not the current one from your app.", code="invalid_code")
    device.delete()
    security_event_record(user=user, kind=SecurityEvent.Kind.TWO_FACTOR_DISABLED, request=request)
    notify(
        user=user,
        subject="Two-factor authentication is off",
        body="Your Tribute account no longer asks for an authenticator code.",
    )


# Re-authentication -------------------------------------------------------------------------------------


def reauthenticate(*, request: HttpRequest, user: User, password: str, code: str) -> None:
    """Confirm the person at the keyboard: their password and, as they have one, their authenticator
    code. Marks the session for REAUTH_WINDOW_S."""
    if not user.check_password(password) or not totp_check(user=user, code=code):
        raise ApiError("The password or the code is wrong.", code="reauthentication_failed", status_code=403)
    request.session[REAUTH_SESSION_KEY] = clock.now().timestamp()
    security_event_record(user=user, kind=SecurityEvent.Kind.REAUTHENTICATED, request=request)


def require_strong_session(*, request: HttpRequest, user: User, action: str) -> None:
    """Refuse `action` unless the user has an authenticator and re-authenticated (password and code) in
    this session within REAUTH_WINDOW_S."""
    if not settings.SENSITIVE_CHANGES_NEED_TWO_FACTOR:
        return
    if not has_two_factor(user):
        raise Forbidden(f"Turn on two-factor authentication before you {action}.", code="two_factor_required")
    session = getattr(request, "session", None)
    confirmed_at = session.get(REAUTH_SESSION_KEY) if session is not None else None
    if confirmed_at is None or clock.now().timestamp() - float(confirmed_at) > settings.REAUTH_WINDOW_S:
        raise Forbidden(
            f"Confirm your password and authenticator code before you {action} "
            "(POST /api/v1/reauthenticate, or the dashboard's confirmation page).",
            code="reauthentication_required",
        )


class StaffTwoFactorMiddleware:
    """Staff reach the admin and the operator pages only once they have an authenticator; until then
    those pages send them to set one up."""

    STAFF_PREFIXES = ("/admin/", "/dashboard/staff/")
    OPEN_PATHS = ("/admin/login/", "/admin/logout/")

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        user = getattr(request, "user", None)
        if (
            settings.TWO_FACTOR_REQUIRED_FOR_STAFF
            and request.path.startswith(self.STAFF_PREFIXES)
            and not request.path.startswith(self.OPEN_PATHS)
            and isinstance(user, User)
            and user.is_staff
            and not has_two_factor(user)
        ):
            from django.shortcuts import redirect

            return redirect(f"{reverse('two-factor')}?required=staff")
        return self.get_response(request)

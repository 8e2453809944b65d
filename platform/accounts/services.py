from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.text import slugify

from accounts import keys, security
from accounts.models import ApiKey, Membership, Organisation, Role, Scope, SecurityEvent, User
from accounts.selectors import api_key_for_prefix
from common import clock
from common.problems import ApiError, Conflict, Forbidden

# Scopes of the vendor-only operations (metered access, registering outputs): only a vendor's key has them.
# Scopes for organisations' keys: AI vendors' (access, outputs) and hosting platforms' (partner).
VENDOR_SCOPES = frozenset({Scope.ACCESS.value, Scope.OUTPUTS.value, Scope.PARTNER.value})

# last_used_at is written at most this often per key, so the hot path is not a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str,
    password: str | None,
    role: str,
    display_name: str = "",
    organisation_name: str = "",
    email_verified: bool = False,
) -> User:
    """Create an account. `email_verified` is for accounts whose address is known to be theirs (the
    demo's people, an operator's command); everyone else proves it with email_verification_send."""
    if role not in Role.values:
        raise ApiError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", code="invalid_role")
    if User.objects.filter(email__iexact=email).exists():
        raise ApiError("An account with this email already exists.", code="email_taken")
    user = User(
        username=username,
        email=email.lower(),
        role=role,
        display_name=display_name,
        email_verified_at=clock.now() if email_verified else None,
    )
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    if role == Role.VENDOR:
        organisation_create(
            name=organisation_name or f"{display_name or username}'s organisation", owner=user
        )
    return user


@transaction.atomic
def organisation_create(*, name: str, owner: User) -> Organisation:
    base = slugify(name)[:50] or "org"
    slug = base
    suffix = 1
    while Organisation.objects.filter(slug=slug).exists():
        suffix += 1
        slug = f"{base}-{suffix}"
    organisation = Organisation.objects.create(name=name, slug=slug)
    Membership.objects.create(organisation=organisation, user=owner, role=Membership.MemberRole.OWNER)
    return organisation


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str


def api_key_create(
    *,
    user: User,
    name: str,
    scopes: list[str],
    organisation: Organisation | None = None,
    expires_at: datetime | None = None,
    platform_use: bool = False,
) -> IssuedKey:
    """Issue a key. The returned secret is the only copy: it is never stored or shown again.

    Only vendors' keys may have the vendor scopes, except a key the platform makes for its own use on a
    person's behalf (`platform_use`: the studio's metered accesses), whose secret nobody is ever shown."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if not scopes or unknown:
        raise ApiError(
            f"Scopes must be a non-empty subset of {', '.join(Scope.values)}; unknown: {', '.join(unknown)}.",
            code="invalid_scopes",
        )
    vendor_scopes = sorted(set(scopes) & VENDOR_SCOPES)
    if vendor_scopes and user.role != Role.VENDOR and not platform_use:
        raise Forbidden(
            f"Only AI vendors' keys may have the {', '.join(vendor_scopes)} scope.",
            code="vendor_role_required",
        )
    if (
        organisation is not None
        and not Membership.objects.filter(organisation=organisation, user=user).exists()
    ):
        raise Forbidden("You are not a member of this organisation.", code="not_a_member")
    if organisation is None and user.role == Role.VENDOR:
        organisation = Organisation.objects.filter(membership__user=user).order_by("id").first()
    if expires_at is not None and expires_at <= clock.now():
        raise ApiError("expires_at must be in the future.", code="invalid_expiry")
    for _ in range(5):
        secret = keys.generate_key()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    name=name,
                    prefix=keys.key_prefix(secret),
                    key_hash=keys.hash_key(secret),
                    user=user,
                    organisation=organisation,
                    scopes=sorted(set(scopes)),
                    expires_at=expires_at,
                )
            if not platform_use:
                security.security_event_record(
                    user=user,
                    kind=SecurityEvent.Kind.KEY_CREATED,
                    key=api_key.prefix,
                    name=name,
                    scopes=api_key.scopes,
                )
                security.notify(
                    user=user,
                    subject="A new Tribute API key was created",
                    body=(
                        f"A key named {name[:80]!r} (prefix {api_key.prefix}, scopes "
                        f"{', '.join(api_key.scopes)}) was created for your account."
                    ),
                )
            return IssuedKey(api_key=api_key, secret=secret)
        except IntegrityError:  # prefix collision: astronomically rare, try another key
            continue
    raise RuntimeError("could not allocate a unique API key prefix")


def api_key_revoke(*, api_key: ApiKey, by: User | None = None) -> ApiKey:
    """Revoke now. The conditional update keeps the first revocation time if two requests race."""
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    if revoked:
        security.security_event_record(
            user=api_key.user,
            kind=SecurityEvent.Kind.KEY_REVOKED,
            key=api_key.prefix,
            by=by.username if by is not None else "",
        )
    return api_key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, by: User, overlap: timedelta) -> IssuedKey:
    """Issue a successor with the same name, scopes and organisation; the old key keeps working for
    `overlap` (so programs can switch without an outage) and then expires. Rotating an expired or revoked
    key is refused: there is nothing to overlap with."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if not locked.is_active:
        raise Conflict("This key is no longer active; create a new one.", code="api_key_inactive")
    now = clock.now()
    ends = now + overlap
    if locked.expires_at is None or locked.expires_at > ends:
        ApiKey.objects.filter(pk=locked.pk).update(expires_at=ends)
    lifetime = None if locked.expires_at is None else max(locked.expires_at - locked.created_at, overlap)
    issued = api_key_create(
        user=locked.user,
        name=locked.name,
        scopes=list(locked.scopes),
        organisation=locked.organisation,
        expires_at=None if lifetime is None else now + lifetime,
    )
    security.security_event_record(
        user=locked.user,
        kind=SecurityEvent.Kind.KEY_ROTATED,
        key=locked.prefix,
        successor=issued.api_key.prefix,
        old_key_expires_at=ends.isoformat(),
        by=by.username,
    )
    return issued


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The key's row if the secret is valid, active and its user active; None otherwise."""
    if not keys.is_well_formed(secret):
        return None
    api_key = api_key_for_prefix(prefix=keys.key_prefix(secret))
    if api_key is None or not keys.matches(secret, api_key.key_hash):
        return None
    if not api_key.is_active or not api_key.user.is_active:
        return None
    now = clock.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


# Keys authenticated in the last KEY_REUSE_S seconds, by the SHA-256 of their secret, for callers that
# confirm the key inside the transaction that acts on it (api_key_still_active): the metered access call
# authenticates the same few keys hundreds of times a second, and the lookup cost as much as the charge.
KEY_REUSE_S = 5.0
_KEYS_KEPT = 10_000
_keys_seen: dict[str, tuple[float, ApiKey]] = {}


def api_key_authenticate_reusing(*, secret: str) -> ApiKey | None:
    """api_key_authenticate, answered from memory for a key it accepted in the last KEY_REUSE_S seconds.

    The key may have been revoked or have expired since, or its user been deactivated: a caller must check
    api_key_still_active in the transaction that uses the key, and call api_key_forget when it fails."""
    if not keys.is_well_formed(secret):
        return None
    digest = keys.hash_key(secret)
    now = time.monotonic()
    seen = _keys_seen.get(digest)
    if seen is not None and now - seen[0] <= KEY_REUSE_S:
        return seen[1]
    api_key = api_key_authenticate(secret=secret)
    if api_key is not None:
        if len(_keys_seen) >= _KEYS_KEPT:
            _keys_seen.clear()
        _keys_seen[digest] = (now, api_key)
    return api_key


# When this process last wrote each key's last_used_at (by key id): a key used many times a second costs
# one dictionary lookup per use and one UPDATE per LAST_USED_RESOLUTION, whoever charges through it.
_last_marked: dict[int, datetime] = {}


def api_key_mark_used(*, api_key: ApiKey) -> None:
    """Record that the key was used now, for its "last used" time: at most one write per key per
    LAST_USED_RESOLUTION and process, and the UPDATE itself skips a row another process wrote recently.
    Called by every path that uses a key (the metered access, retrieval, x402 with a key), including those
    that reuse an authenticated key from memory or are called as services (the demo, jobs)."""
    now = clock.now()
    marked = _last_marked.get(api_key.pk) or api_key.last_used_at
    if marked is not None and marked <= now < marked + LAST_USED_RESOLUTION:
        return
    if len(_last_marked) >= _KEYS_KEPT:
        _last_marked.clear()
    _last_marked[api_key.pk] = now
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True)
        | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        | Q(last_used_at__gt=now)
    ).update(last_used_at=now)
    api_key.last_used_at = now


def api_key_forget(*, api_key_id: int | None = None) -> None:
    """Stop reusing a key (every key when no id is given)."""
    if api_key_id is None:
        _keys_seen.clear()
        _last_marked.clear()
        return
    _last_marked.pop(api_key_id, None)
    for digest in [digest for digest, (_, key) in list(_keys_seen.items()) if key.pk == api_key_id]:
        _keys_seen.pop(digest, None)


# Email verification ------------------------------------------------------------------------------------


class EmailVerificationTokens(PasswordResetTokenGenerator):
    """Tokens for the link that proves a user reads their address. A token stops working once the address
    is verified or changed, and after PASSWORD_RESET_TIMEOUT."""

    key_salt = "accounts.EmailVerificationTokens"

    def _make_hash_value(self, user: AbstractBaseUser, timestamp: int) -> str:
        assert isinstance(user, User)
        return f"{user.pk}{user.email}{user.email_verified_at}{timestamp}"


email_verification_tokens = EmailVerificationTokens()


def email_verification_link(*, user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = email_verification_tokens.make_token(user)
    return f"{settings.SITE_URL}{reverse('verify-email', args=[uid, token])}"


def email_verification_send(*, user: User) -> None:
    """Mail the user a link that verifies their address (after the current transaction commits)."""
    if user.is_email_verified:
        return
    link = email_verification_link(user=user)
    transaction.on_commit(
        partial(
            send_mail,
            subject="Confirm your email address for Tribute",
            message=(
                "Follow this link to confirm this address and sign in to Tribute:\n\n"
                f"{link}\n\nIf you did not sign up, ignore this message: nothing happens without the link.\n"
            ),
            from_email=None,
            recipient_list=[user.email],
        )
    )


def user_for_verification_link(*, uidb64: str, token: str) -> User | None:
    try:
        user = User.objects.get(pk=int(urlsafe_base64_decode(uidb64).decode()))
    except (ValueError, TypeError, OverflowError, User.DoesNotExist):
        return None
    return user if email_verification_tokens.check_token(user, token) else None


def user_email_verify(*, user: User) -> User:
    """Mark the address verified (once: the first time is kept)."""
    User.objects.filter(pk=user.pk, email_verified_at__isnull=True).update(email_verified_at=clock.now())
    user.refresh_from_db(fields=["email_verified_at"])
    return user


def require_verified_email(*, user: User, action: str) -> None:
    """Refuse `action` (words for the message) to an account whose address is not verified yet."""
    if not user.is_email_verified:
        raise Forbidden(
            f"Confirm your email address before you {action}: follow the link we mailed you "
            "(the dashboard can send it again).",
            code="email_not_verified",
        )


def signup_attempt_on_taken_identity(*, email: str, username_taken: bool) -> None:
    """Someone signed up with an address or a username already in use. The page they see is the same as
    for a new account; only the address's owner learns what happened, by mail."""
    if username_taken and not User.objects.filter(email__iexact=email).exists():
        subject = "Choose another username for Tribute"
        body = (
            "Someone (probably you) tried to sign up to Tribute with this address, but the username they "
            "chose is taken. Sign up again with another username:\n\n"
            f"{settings.SITE_URL}{reverse('signup')}\n"
        )
    else:
        subject = "You already have a Tribute account"
        body = (
            "Someone (probably you) tried to sign up to Tribute with this address, which already has an "
            "account. Log in, or set a new password for it here (this also confirms the address):\n\n"
            f"{settings.SITE_URL}{reverse('password_reset')}\n\n"
            "If this was not you, you need do nothing.\n"
        )
    transaction.on_commit(
        partial(send_mail, subject=subject, message=body, from_email=None, recipient_list=[email.lower()])
    )


def login_lockout_notify(*, username: str) -> None:
    """Tell an account's owner that failed logins locked it out for a while (nothing when no such account)."""
    user = User.objects.filter(username__iexact=username.strip()).first()
    if user is None:
        return
    send_mail(
        subject="Too many failed logins to your Tribute account",
        message=(
            f"Someone failed to log in to your account {user.username} many times, so logins to it are "
            "refused for a while, even with the right password. If this was not you, nothing of your "
            "account was reached; consider a longer password and turning on two-factor authentication.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from common import clock


class Role(models.TextChoices):
    CREATOR = "creator", "Creator"
    FAN = "fan", "Fan"
    VENDOR = "vendor", "AI vendor"


class User(AbstractUser):
    """A person. Creators register works, fans derive from them, vendors act for an organisation."""

    email = models.EmailField("email address", unique=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.FAN)
    display_name = models.CharField(max_length=120, blank=True)
    # Set when the user followed a link we mailed to `email` (or reset the password through it); until
    # then the account may not publish, receive money or be named on a split sheet.
    email_verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="user_role_valid"),
        ]

    @property
    def public_name(self) -> str:
        return self.display_name or self.username

    @property
    def is_email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_creator(self) -> bool:
        return self.role == Role.CREATOR


class Organisation(models.Model):
    """An AI vendor (or any company) with members and API keys."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(User, through="Membership", related_name="organisations")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class MemberRole(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=MemberRole.choices, default=MemberRole.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organisation_id} ({self.role})"


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write catalog"
    ACCESS = "access", "Metered access"
    OUTPUTS = "outputs", "Register outputs"
    PARTNER = "partner", "Partner verdicts and webhooks"


class ApiKey(models.Model):
    """A secret for programs. Only the SHA-256 of the key is kept; the key itself is shown once."""

    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        now = clock.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class PayoutProfile(models.Model):
    """How a user is paid: the rail they chose and the identities proven on each rail.

    A Stripe account counts once Stripe reports `payouts_enabled` (kept in sync by the `account.updated`
    webhook); a wallet address is stored only after the user signed our challenge with it.
    """

    class Rail(models.TextChoices):
        STRIPE = "stripe", "Stripe Connect"
        CHAIN = "chain", "Stablecoin to a wallet"
        MANUAL = "manual", "Manual (bank details with the operator)"

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="payout_profile")
    rail = models.CharField(max_length=16, choices=Rail.choices, default=Rail.MANUAL)
    stripe_account_id = models.CharField(max_length=64, blank=True)
    stripe_payouts_enabled = models.BooleanField(default=False)
    stripe_details_submitted = models.BooleanField(default=False)
    # When Stripe created the account.updated event last applied: an older event arriving late is ignored.
    stripe_state_at = models.DateTimeField(null=True, blank=True)
    wallet_address = models.CharField(max_length=42, blank=True)
    wallet_verified_at = models.DateTimeField(null=True, blank=True)
    # Manual rail: where the operator sends a manual payout (accounts.payout_identity.manual_payee_set).
    # Shown to the payee masked; read in full only by staff (admin, manual payouts export).
    manual_method = models.CharField(max_length=8, blank=True)  # "bank" | "email" | ""
    manual_holder = models.CharField(max_length=140, blank=True)
    manual_iban = models.CharField(max_length=34, blank=True)
    manual_bic = models.CharField(max_length=11, blank=True)
    manual_email = models.EmailField(max_length=254, blank=True)
    manual_updated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rail__in=["stripe", "chain", "manual"]), name="payout_profile_rail_valid"
            ),
            models.UniqueConstraint(
                fields=["stripe_account_id"],
                condition=~models.Q(stripe_account_id=""),
                name="payout_profile_stripe_account_once",
            ),
        ]

    def __str__(self) -> str:
        return f"Payout profile of user #{self.user_id} ({self.rail})"

    @property
    def manual_ready(self) -> bool:
        """The operator knows where to send a manual payout."""
        return bool(self.manual_iban or self.manual_email)

    @property
    def manual_summary(self) -> str:
        """The manual payee details as the payee sees them: masked, never in full."""
        if self.manual_method == "bank" and self.manual_iban:
            return f"{self.manual_holder}, IBAN {self.manual_iban[:4]} •••• {self.manual_iban[-4:]}"
        if self.manual_method == "email" and self.manual_email:
            name, _, domain = self.manual_email.partition("@")
            return f"{self.manual_holder}, {name[:1]}•••@{domain}"
        return ""

    @property
    def stripe_ready(self) -> bool:
        """Stripe can pay this user: an account exists and Stripe says payouts to it are enabled."""
        return bool(self.stripe_account_id) and self.stripe_payouts_enabled

    @property
    def wallet_ready(self) -> bool:
        """A wallet address is stored, and it was stored only after its signature was verified."""
        return bool(self.wallet_address) and self.wallet_verified_at is not None


class WalletChallenge(models.Model):
    """A message a user signs with a wallet to prove they hold it (EIP-191 personal_sign).

    The message names the user, our domain, a random nonce and an expiry; it is kept here so the
    signature is checked against exactly the text we issued, and `used_at` is set once (by a conditional
    UPDATE), so a signature can link a wallet only once.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="wallet_challenges")
    nonce = models.CharField(max_length=64, unique=True)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    address = models.CharField(max_length=42, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")), name="wallet_challenge_expiry"
            ),
        ]

    def __str__(self) -> str:
        return f"Wallet challenge {self.nonce[:8]}… for user #{self.user_id}"


class TotpDevice(models.Model):
    """A person's authenticator app (TOTP, RFC 6238, through pyotp). Confirmed once a code from the app
    was entered; each time step's code is accepted once (`last_used_step`, advanced by a conditional
    UPDATE), so an observed code cannot be replayed."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="totp_device")
    secret = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used_step = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        state = "confirmed" if self.confirmed_at else "not confirmed"
        return f"Authenticator of user #{self.user_id} ({state})"


class SecurityEvent(models.Model):
    """What happened to an account's security: logins, keys, payout destinations, claim decisions. Shown to
    the account's owner and to operators; rows are only ever added."""

    class Kind(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOGIN_LOCKED = "login_locked", "Logins locked after failures"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        EMAIL_VERIFIED = "email_verified", "Email address confirmed"
        TWO_FACTOR_ENABLED = "two_factor_enabled", "Two-factor authentication turned on"
        TWO_FACTOR_DISABLED = "two_factor_disabled", "Two-factor authentication turned off"
        REAUTHENTICATED = "reauthenticated", "Confirmed identity for a sensitive change"
        KEY_CREATED = "key_created", "API key created"
        KEY_REVOKED = "key_revoked", "API key revoked"
        KEY_ROTATED = "key_rotated", "API key rotated"
        PAYOUT_CHANGED = "payout_changed", "Payout destination changed"
        CLAIM_DECIDED = "claim_decided", "Claim decided"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="security_events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.JSONField(default=dict, blank=True)
    ip_address = models.CharField(max_length=45, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} for user #{self.user_id}"

"""Fans' studio: the wallet they pay from, generation jobs, and releases of what they made."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Wallet(models.Model):
    """A person's prepaid account: a personal organisation whose prepaid balance (the same ledger account a
    vendor tops up) pays licence fees, per-use prices of generations, and purchases. `api_key` is the
    platform's own key on it, used to make metered accesses on the person's behalf; its secret was never
    kept, so nobody can call the API with it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wallet")
    organisation = models.OneToOneField(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="personal_wallet"
    )
    api_key = models.OneToOneField("accounts.ApiKey", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Wallet of user #{self.user_id}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class GenerationJob(models.Model):
    """One run of a generator under a grant. What a successful run cost is `charged_minor`, with the access
    receipts in `receipts`; a failed run costs nothing (studio.services.job_run).

    Delivering the result takes three steps, so that nothing slow holds the grant's lock: the charge
    (`charged_at`, with `charges` and the manifest's `licence`), then signing and storing the file outside
    any transaction, then registering the derivative (`result_work`). A job that fails between the charge
    and the registration has its charges refunded (`refunded_at`)."""

    fan = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generation_jobs"
    )
    grant = models.ForeignKey("catalog.Grant", on_delete=models.PROTECT, related_name="generation_jobs")
    generator = models.CharField(max_length=60)
    # A composed job: the generator's result becomes an input of `compose_generator`, run on the parent
    # licensed by `compose_grant` (a fan's vocal converted into a licensed voice, then sung over a licensed
    # instrumental). The result derives from both parents.
    compose_grant = models.ForeignKey(
        "catalog.Grant", null=True, blank=True, on_delete=models.PROTECT, related_name="composed_jobs"
    )
    compose_generator = models.CharField(max_length=60, blank=True)
    # What the fan declared of the content (null: not declared). Terms that forbid explicit content need
    # the declaration, and refuse a job declared explicit.
    explicit = models.BooleanField(null=True, blank=True)
    title = models.CharField(max_length=200)
    territory = models.CharField(max_length=2)
    # name -> {"kind", "media_type", "storage_name", "sha256", "filename", "size_bytes"}
    # or {"kind": "text", "text"}
    inputs = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=120, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    receipts = models.JSONField(default=list, blank=True)
    charged_minor = models.BigIntegerField(default=0)
    # Each charge made through the access API once the result was made:
    # {"work", "use", "price_minor", "access_id", "idempotency_key", "receipt"}.
    charges = models.JSONField(default=list, blank=True)
    # The licence assertion the manifest carries (grant, terms, parents, access ids and receipts), recorded
    # with the charges so the file can be signed after the charge's transaction.
    licence = models.JSONField(default=dict, blank=True)
    charged_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    result_work = models.ForeignKey(
        "catalog.Work", null=True, blank=True, on_delete=models.PROTECT, related_name="generation_jobs"
    )
    result_asset = models.ForeignKey(
        "catalog.Asset", null=True, blank=True, on_delete=models.PROTECT, related_name="generation_jobs"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["fan", "created_at"]),
            models.Index(fields=["status"]),
            # Charged, not registered and not refunded: what the sweep looks at for refunds still owed.
            models.Index(
                fields=["id"],
                condition=Q(charged_at__isnull=False, refunded_at__isnull=True, result_work__isnull=True),
                name="job_refund_owed_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="job_progress_percent"),
            models.CheckConstraint(condition=Q(charged_minor__gte=0), name="job_charge_non_negative"),
        ]

    def __str__(self) -> str:
        return f"Job #{self.pk} {self.generator} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class ReleaseStatus(models.TextChoices):
    ON_SALE = "on_sale", "On sale"
    WITHDRAWN = "withdrawn", "Withdrawn"
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    REFUSED = "refused", "Refused"


class Release(models.Model):
    """A work offered for download on Tribute at a price (zero: a free download)."""

    work = models.OneToOneField("catalog.Work", on_delete=models.PROTECT, related_name="release")
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="releases"
    )
    price_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=ReleaseStatus.choices, default=ReleaseStatus.ON_SALE)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="release_price_non_negative"),
            models.CheckConstraint(condition=Q(status__in=ReleaseStatus.values), name="release_status_valid"),
        ]

    def __str__(self) -> str:
        return f"Release of work #{self.work_id} at {self.price_minor} {self.currency}"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    APPROVED = "approved", "Approved"
    REFUSED = "refused", "Refused"


class ReleaseApproval(models.Model):
    """A parent's owner's decision on a release of a derivative made under terms that require approval
    before release (a voice's owner approving a song made in their voice). The release is sold only once
    every approval it needs is given; one refusal (with its reason) stops it."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="approvals")
    work = models.ForeignKey("catalog.Work", on_delete=models.PROTECT, related_name="release_approvals")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="release_approvals"
    )
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["release", "work"], name="release_approval_once_per_parent"),
            models.CheckConstraint(
                condition=Q(status__in=ApprovalStatus.values), name="release_approval_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Approval of release #{self.release_id} for work #{self.work_id} ({self.status})"


class Purchase(models.Model):
    """A buyer's purchase of a release, once per buyer; the sale's revenue item is keyed by this row."""

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="purchases")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["release", "buyer"], name="purchase_once_per_buyer"),
            models.CheckConstraint(condition=Q(amount_minor__gte=0), name="purchase_amount_non_negative"),
        ]

    def __str__(self) -> str:
        return f"Purchase #{self.pk} of release #{self.release_id} by user #{self.buyer_id}"

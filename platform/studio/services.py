"""Writes for the studio: wallets, accepting terms, generation jobs, releases and purchases.

Money invariants:
- the licence fee is charged once per grant, from the fan's wallet, in the transaction that activates the
  grant (royalties.licences: a grant is never active with its fee unpaid);
- a generation job charges its per-use prices (one metered access per use class the generator needs) only
  when it succeeds, in the same database transaction that registers the derivative: a failed job (the
  generator's error, a vendor's timeout, a short balance, a revoked licence) charges nothing;
- a purchase is recorded once per buyer and release, at the price and status read under the release's
  row lock in the purchase's transaction, its price held on the buyer's wallet until settlement splits it
  up the derivative's chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from access.services import AccessRequest, access_request
from accounts.models import Role, User
from accounts.services import api_key_create, organisation_create
from catalog import tracing
from catalog.models import (
    COLLECTION_KINDS,
    Asset,
    Grant,
    GrantStatus,
    Offer,
    Work,
    WorkParent,
    WorkStatus,
)
from catalog.services import ParentClaim, asset_upload, derivative_create, media_error_to_api
from common import clock
from common import currency as currencies
from common.money import Money
from common.problems import ApiError, Conflict, Forbidden, NotFound
from media import credentials, provenance
from media.errors import MediaError
from media.generators import GeneratedMedia, GenerationFailed, GenerationRequest, Generator, ParentMedia
from media.generators.base import metered_uses
from media.validation import Limits, inspect
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds
from royalties.licences import licence_accept, licence_pay
from royalties.revenue import sale_record
from studio import generators, selectors
from studio.models import GenerationJob, JobStatus, Purchase, Release, ReleaseStatus, Wallet

logger = logging.getLogger(__name__)

_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Job progress: the generator's own 0-100 is shown between these, the registration after it.
_GENERATION_START, _GENERATION_END = 5, 80


def _require_maker(user: User) -> None:
    if user.role not in (Role.FAN, Role.CREATOR):
        raise Forbidden("Only fans and creators make derivative works.", code="role_not_allowed")


# Wallets -----------------------------------------------------------------------------------------------


def wallet_get_or_create(*, user: User) -> Wallet:
    """The person's wallet, made on first need: a personal organisation (its prepaid balance is the
    wallet) and the platform's key on it for metered accesses made on the person's behalf."""
    existing = selectors.wallet_of(user=user)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            organisation = organisation_create(name=f"{user.public_name} (personal wallet)", owner=user)
            issued = api_key_create(
                user=user,
                name="Tribute studio (platform use)",
                scopes=["access"],
                organisation=organisation,
                platform_use=True,
            )
            return Wallet.objects.create(user=user, organisation=organisation, api_key=issued.api_key)
    except IntegrityError:  # a concurrent request made it first
        return Wallet.objects.select_related("organisation").get(user=user)


def wallet_fund(*, user: User, amount: Money, external_ref: str, rail: str = "manual") -> Wallet:
    """Credit the person's wallet with money received on `rail` (idempotent by `external_ref`)."""
    wallet = wallet_get_or_create(user=user)
    prepaid_fund(organisation=wallet.organisation, amount=amount, external_ref=external_ref, rail=rail)
    return wallet


# Terms -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TermsAcceptance:
    grant: Grant
    created: bool
    fee_charged_minor: int


def terms_accept(*, user: User, offer: Offer) -> TermsAcceptance:
    """Accept an offer for the studio: the grant is held by the person's wallet, and its licence fee is
    charged from the wallet in the same transaction that activates it (royalties.licences). A grant
    waiting for the creator's approval is paid when accepted again after approval, or at the first job.
    A short wallet answers 402 and leaves nothing behind."""
    _require_maker(user)
    wallet = wallet_get_or_create(user=user)
    acceptance = licence_accept(offer=offer, user=user, organisation=wallet.organisation)
    return TermsAcceptance(
        grant=acceptance.grant, created=acceptance.created, fee_charged_minor=acceptance.fee_charged_minor
    )


# Jobs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    filename: str
    data: bytes


def _limits() -> Limits:
    return Limits(
        max_bytes=settings.UPLOAD_MAX_BYTES,
        max_pixels=settings.UPLOAD_MAX_PIXELS,
        max_audio_seconds=settings.UPLOAD_MAX_AUDIO_SECONDS,
    )


def _parent_asset(work: Work, kind: str) -> Asset | None:
    """The parent's file the generator works from: the work's own, or a member's for a style or voice."""
    own = Asset.objects.filter(work=work, blob__kind=kind).select_related("blob").order_by("id").first()
    if own is not None or work.kind not in COLLECTION_KINDS:
        return own
    return (
        Asset.objects.filter(work__in=work.members.all(), blob__kind=kind)
        .select_related("blob", "work")
        .order_by("work_id", "id")
        .first()
    )


def _store_inputs(
    generator: Generator, inputs: Mapping[str, InputFile | str]
) -> dict[str, dict[str, object]]:
    """Validate the fan's inputs like any upload and keep the files; refused inputs store nothing."""
    unknown = sorted(set(inputs) - {spec.name for spec in generator.inputs})
    if unknown:
        raise ApiError(
            f"The {generator.title} generator takes no input named {', '.join(unknown)}.",
            code="unknown_input",
        )
    checked: list[tuple[str, dict[str, object], bytes | None]] = []
    for spec in generator.inputs:
        value = inputs.get(spec.name)
        if spec.kind == "text":
            text = value.strip() if isinstance(value, str) else ""
            if spec.required and not text:
                raise ApiError(f"{spec.label} is required.", code="missing_input", extra={"input": spec.name})
            if len(text) > spec.max_length:
                raise ApiError(
                    f"{spec.label} is at most {spec.max_length} characters.",
                    code="input_too_long",
                    extra={"input": spec.name},
                )
            if text:
                checked.append((spec.name, {"kind": "text", "text": text}, None))
            continue
        if not isinstance(value, InputFile):
            if spec.required:
                raise ApiError(f"{spec.label} is required.", code="missing_input", extra={"input": spec.name})
            continue
        try:
            info = inspect(value.data, _limits())
        except MediaError as exc:
            problem = media_error_to_api(exc)
            problem.extra = {"input": spec.name}
            raise problem from None
        if info.kind != spec.kind:
            raise ApiError(
                f"{spec.label} must be {spec.kind}; this file is {info.kind}.",
                code="wrong_media_kind",
                status_code=415,
                extra={"input": spec.name},
            )
        sha256 = hashlib.sha256(value.data).hexdigest()
        record: dict[str, object] = {
            "kind": info.kind,
            "media_type": info.media_type,
            "sha256": sha256,
            "filename": value.filename[:200] or spec.name,
            "size_bytes": len(value.data),
            "storage_name": f"studio/inputs/{sha256[:2]}/{sha256}.{info.extension}",
        }
        checked.append((spec.name, record, value.data))
    stored: dict[str, dict[str, object]] = {}
    for name, record, data in checked:
        if data is not None and not default_storage.exists(str(record["storage_name"])):
            default_storage.save(str(record["storage_name"]), ContentFile(data))
        stored[name] = record
    return stored


def _offer_uses(offer: Offer) -> dict[str, int]:
    return {use.use_class: use.price_minor for use in offer.uses.all()}


def generator_refusal(*, generator: Generator, offer: Offer) -> list[str]:
    """The use classes the generator needs that the offer does not allow (empty: it may run)."""
    return sorted(generator.use_classes - set(_offer_uses(offer)))


def generator_applicable(*, generator: Generator, offer: Offer) -> bool:
    """Whether the offer's work has the kind of file the generator works from."""
    return _parent_asset(offer.work, generator.parent_kind) is not None


def job_price_minor(*, generator: Generator, offer: Offer) -> int:
    """What one successful run costs under these terms: the per-use price of each metered use."""
    prices = _offer_uses(offer)
    return sum(prices.get(use, 0) for use in metered_uses(generator))


def job_create(
    *,
    user: User,
    grant_id: int,
    generator_name: str,
    inputs: Mapping[str, InputFile | str],
    title: str = "",
    territory: str = "",
) -> GenerationJob:
    """Queue a generation under the user's grant. Refused (changing nothing) when the generator is unknown,
    the terms do not allow a use it needs (403 naming the term), the grant is not active, an input is
    missing or not valid media, or the wallet cannot pay the run's per-use prices (402)."""
    _require_maker(user)
    generator = generators.get(generator_name)
    if generator is None:
        raise ApiError(f"There is no generator named {generator_name!r}.", code="unknown_generator")
    grant = Grant.objects.select_related("offer__work__created_by").filter(pk=grant_id, licensee=user).first()
    if grant is None:
        raise NotFound("No such grant among yours.", code="grant_not_found")
    offer, work = grant.offer, grant.offer.work
    missing = generator_refusal(generator=generator, offer=offer)
    if missing:
        raise Forbidden(
            f"The terms of “{work.title}” (version {offer.version}) do not allow "
            f"{' and '.join(repr(use) for use in missing)}, which the {generator.title} generator needs.",
            code="use_not_allowed",
            extra={
                "term": missing[0],
                "missing_uses": missing,
                "generator": generator.name,
                "offer": offer.pk,
            },
        )
    if grant.status not in (GrantStatus.ACTIVE, GrantStatus.PENDING_PAYMENT):
        raise Conflict(
            f"Grant {grant.pk} is {grant.get_status_display().lower()}, not active.", code="grant_not_active"
        )
    if offer.expires_at is not None and offer.expires_at <= clock.now():
        raise Conflict("These terms have expired.", code="offer_expired")
    territory = (territory or settings.STUDIO_TERRITORY).strip().upper()
    if not _COUNTRY.match(territory):
        raise ApiError("territory must be an ISO 3166-1 alpha-2 country code.", code="invalid_territory")
    if offer.territories and territory not in offer.territories:
        raise Forbidden(
            f"The terms cover only {', '.join(offer.territories)}.",
            code="territory_not_allowed",
            extra={"term": "territories"},
        )
    if _parent_asset(work, generator.parent_kind) is None:
        raise ApiError(
            f"The {generator.title} generator works from {generator.parent_kind}; “{work.title}” has no "
            f"{generator.parent_kind} file.",
            code="generator_not_applicable",
            status_code=422,
        )
    wallet = wallet_get_or_create(user=user)
    price = job_price_minor(generator=generator, offer=offer)
    if price and grant.organisation_id != wallet.organisation_id:
        raise Conflict(
            "This generator is paid per use from your studio wallet: accept the terms from the studio so "
            "the licence is held by your wallet.",
            code="grant_not_in_wallet",
        )
    stored = _store_inputs(generator, inputs)
    with transaction.atomic():
        if grant.status == GrantStatus.PENDING_PAYMENT:  # approved since it was accepted: pay it now
            grant = licence_pay(grant=grant, user=user, organisation=wallet.organisation).grant
        if price and selectors.wallet_available(user=user, currency=offer.currency) < price:
            raise InsufficientFunds(
                f"A run of the {generator.title} generator costs "
                f"{currencies.format_minor(price, offer.currency)}; top up your wallet.",
                extra={"price_minor": price, "currency": offer.currency},
            )
        job = GenerationJob.objects.create(
            fan=user,
            grant=grant,
            generator=generator.name,
            title=(title.strip() or f"{work.title} ({generator.title.lower()})")[:200],
            territory=territory,
            inputs=stored,
            currency=offer.currency,
        )
        transaction.on_commit(partial(_enqueue, job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from studio.tasks import run_generation_job

    run_generation_job.delay(job_id)


def _set_progress(job_id: int, percent: int, stage: str) -> None:
    GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        progress=percent, stage=stage[:120]
    )


class _GeneratorProgress:
    """Maps a generator's 0-100 onto the job's generation span, writing only when something changed."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.last: tuple[int, str] | None = None

    def __call__(self, percent: int, stage: str) -> None:
        scaled = _GENERATION_START + round(
            (_GENERATION_END - _GENERATION_START) * max(0, min(100, percent)) / 100
        )
        if (scaled, stage) != self.last:
            self.last = (scaled, stage)
            _set_progress(self.job_id, scaled, stage)


def _read(storage_name: str) -> bytes:
    with default_storage.open(storage_name, "rb") as handle:
        return bytes(handle.read())


def job_run(*, job_id: int) -> GenerationJob | None:
    """Run a queued job (the Celery task's body). Idempotent: a job that is not queued is left alone.

    Any failure marks the job failed with a message for the fan and charges nothing."""
    started = GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=clock.now(), progress=1, stage="Starting"
    )
    if not started:
        return None
    job = GenerationJob.objects.select_related("grant__offer__work__created_by", "fan").get(pk=job_id)
    try:
        generator = generators.get(job.generator)
        if generator is None:
            raise GenerationFailed("This generator is no longer offered here.", code="unknown_generator")
        parent = _parent_asset(job.grant.offer.work, generator.parent_kind)
        if parent is None:
            raise GenerationFailed(
                "The licensed work no longer has a file to work from.", code="parent_media_missing"
            )
        parent_data = _read(parent.blob.storage_name)
        request = GenerationRequest(
            parents=[ParentMedia(parent.work_id, parent.work.title, parent.blob.media_type, parent_data)],
            inputs={
                name: (str(item["text"]) if item["kind"] == "text" else _read(str(item["storage_name"])))
                for name, item in job.inputs.items()
            },
            context=_licence_context(job, generator),
        )
        result = generator.run(request, _GeneratorProgress(job.pk))
        asset = _register(job=job, generator=generator, result=result, parent=parent, parent_data=parent_data)
        _set_progress(job.pk, 92, "Fingerprinting and indexing the result")
        tracing.asset_fingerprint(asset_id=asset.pk)
    except GenerationFailed as exc:
        return _fail(job, exc.code, str(exc))
    except MediaError as exc:
        return _fail(job, exc.code, str(exc))
    except provenance.ProvenanceError as exc:
        return _fail(job, "provenance_failed", f"The content credentials could not be made: {exc}")
    except ApiError as exc:
        return _fail(job, exc.problem_code, str(exc.detail))
    except ImproperlyConfigured as exc:
        logger.error("studio job %s: %s", job.pk, exc)
        return _fail(job, "not_configured", "The studio is not fully configured; the operator has been told.")
    except Exception:
        logger.exception("studio job %s failed unexpectedly", job.pk)
        return _fail(
            job, "internal_error", f"The generator stopped unexpectedly. Try again, or quote job #{job.pk}."
        )
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, progress=100, stage="Done", finished_at=clock.now()
    )
    job.refresh_from_db()
    return job


def jobs_sweep_stuck() -> int:
    """Close jobs whose worker stopped mid-run (killed, out of memory, machine restarted): a job running for
    longer than STUDIO_JOB_TIMEOUT_S that registered its result is marked succeeded (the charge and the
    result committed together); one that did not is failed, with nothing charged. Returns how many."""
    cutoff = clock.now() - timedelta(seconds=settings.STUDIO_JOB_TIMEOUT_S)
    stuck = GenerationJob.objects.filter(status=JobStatus.RUNNING, started_at__lt=cutoff)
    finished = stuck.filter(result_work__isnull=False).update(
        status=JobStatus.SUCCEEDED, progress=100, stage="Done", finished_at=clock.now()
    )
    failed = stuck.filter(result_work__isnull=True).update(
        status=JobStatus.FAILED,
        error_code="worker_stopped",
        error="The worker stopped while running this job. Nothing was charged; start it again.",
        finished_at=clock.now(),
    )
    return finished + failed


def _fail(job: GenerationJob, code: str, message: str) -> GenerationJob:
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        error_code=code[:40],
        error=f"{message} Nothing was charged."[:500] if not job.result_work_id else message[:500],
        finished_at=clock.now(),
        stage="Failed",
    )
    job.refresh_from_db()
    return job


def terms_url(offer: Offer) -> str:
    return f"{settings.SITE_URL}/api/v1/offers/{offer.pk}/rsl"


def _licence_context(job: GenerationJob, generator: Generator) -> dict[str, object]:
    offer = job.grant.offer
    return {
        "platform": settings.SITE_URL,
        "job": job.pk,
        "grant": job.grant_id,
        "offer": offer.pk,
        "offer_version": offer.version,
        "terms_url": terms_url(offer),
        "uses": sorted(generator.use_classes),
        "price_minor": job_price_minor(generator=generator, offer=offer),
        "currency": offer.currency,
        "payment": "charged through Tribute's access API when the result is delivered",
    }


def _attribution(grant: Grant, generator: Generator) -> str:
    work = grant.offer.work
    made = f"Made on Tribute with the {generator.title} generator."
    if not grant.offer.attribution_required:
        return made
    return (
        f"Based on “{work.title}” by {work.created_by.public_name}, licensed on Tribute "
        f"(grant #{grant.pk}, terms version {grant.offer.version}). {made}"
    )


def _register(
    *, job: GenerationJob, generator: Generator, result: GeneratedMedia, parent: Asset, parent_data: bytes
) -> Asset:
    """Charge the run, sign the content credentials and register the derivative, all or nothing."""
    _set_progress(job.pk, 84, "Charging the per-use prices and signing the content credentials")
    with transaction.atomic():
        grant = (
            Grant.objects.select_for_update().select_related("offer__work__created_by").get(pk=job.grant_id)
        )
        if grant.status != GrantStatus.ACTIVE:
            raise GenerationFailed("The licence was revoked while the job ran.", code="grant_not_active")
        wallet = wallet_get_or_create(user=job.fan)
        receipts: list[str] = []
        access_ids: list[str] = []
        charged = 0
        for use in metered_uses(generator):
            answer = access_request(
                organisation=wallet.organisation,
                api_key=wallet.api_key,
                idempotency_key=f"studio-job-{job.pk}-{use}",
                request=AccessRequest(work_id=grant.offer.work_id, use_class=use, territory=job.territory),
            )
            body = json.loads(answer.body)
            receipts.append(str(body["receipt"]))
            access_ids.append(str(body["access_id"]))
            charged += int(body["price_minor"])
        offer = grant.offer
        licence = {
            "platform": settings.SITE_URL,
            "grant": grant.pk,
            "offer": offer.pk,
            "offer_version": offer.version,
            "terms_url": terms_url(offer),
            "licensee": f"user:{job.fan_id}",
            "parents": [
                {"work": offer.work_id, "title": offer.work.title, "share_bps": offer.derivative_share_bps}
            ],
            "generator": generator.name,
            "job": job.pk,
            "access_ids": access_ids,
            "receipts": receipts,
        }
        ingredients = [
            provenance.Ingredient(
                title=f"{parent.work.title} (work #{parent.work_id})",
                media_type=parent.blob.media_type,
                data=parent_data,
                relationship="parentOf",
            )
        ]
        for name, item in job.inputs.items():
            media_type = str(item.get("media_type", ""))
            if item["kind"] != "text" and provenance.supported(media_type):
                ingredients.append(
                    provenance.Ingredient(
                        title=f"{item.get('filename', name)} ({name}, the fan's own)",
                        media_type=media_type,
                        data=_read(str(item["storage_name"])),
                        relationship="componentOf",
                    )
                )
        signed = provenance.sign(
            data=result.data,
            media_type=result.media_type,
            title=job.title,
            ingredients=[i for i in ingredients if provenance.supported(i.media_type)],
            licence=licence,
            credentials=credentials.signing_credentials(),
            generator=generator.name,
        )
        work = derivative_create(
            user=job.fan,
            title=job.title,
            kind=generator.output_kind,
            parents=[ParentClaim(work_id=offer.work_id, grant_id=grant.pk)],
            description=_attribution(grant, generator),
            tags=["tribute-studio", generator.name],
        )
        # The job fingerprints its result itself (job_run), so no fingerprinting task is queued too.
        upload = asset_upload(
            work=work,
            user=job.fan,
            data=signed,
            filename=f"{_slug(job.title)}.{result.extension}",
            fingerprint_later=False,
        )
        summary = credentials.manifest_of(signed, result.media_type)
        GenerationJob.objects.filter(pk=job.pk).update(
            result_work=work,
            result_asset=upload.asset,
            receipts=receipts,
            charged_minor=charged,
            details=dict(result.details),
            manifest=summary.as_dict() if summary is not None else {},
            progress=90,
            stage="Registered the derivative",
        )
    job.refresh_from_db()
    return upload.asset


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "derivative"


# Releases ----------------------------------------------------------------------------------------------


@transaction.atomic
def release_set(*, user: User, work: Work, price_minor: int, currency: str) -> Release:
    """Offer one of the user's works for download at a price (0: free). Setting it again changes the price
    and puts a withdrawn release back on sale. A price needs every parent's terms to allow commercial use."""
    work = Work.objects.select_for_update().get(pk=work.pk)
    if work.created_by_id != user.pk:
        raise NotFound("No such work among yours.", code="work_not_found")
    if work.status == WorkStatus.WITHDRAWN:
        raise Conflict("This work is withdrawn.", code="work_withdrawn")
    if work.status == WorkStatus.BLOCKED:
        raise Conflict("This work is blocked by a claim; it cannot be sold.", code="work_blocked")
    if not Asset.objects.filter(work=work).exists():
        raise Conflict("The work has no file to download yet.", code="release_without_file")
    if price_minor < 0:
        raise ApiError("The price cannot be negative.", code="invalid_price")
    if not currencies.is_supported(currency):
        raise ApiError(f"Currency {currency!r} is not supported.", code="unsupported_currency")
    if price_minor > 0:
        for link in WorkParent.objects.filter(child=work).select_related("grant__offer", "parent"):
            if not link.grant.offer.commercial_use:
                raise Forbidden(
                    f"The terms of “{link.parent.title}” are non-commercial: this derivative may only be "
                    "released for free.",
                    code="commercial_use_not_allowed",
                    extra={"term": "commercial_use", "work": link.parent_id},
                )
    now = clock.now()
    release, created = Release.objects.get_or_create(
        work=work,
        defaults={"released_by": user, "price_minor": price_minor, "currency": currency, "created_at": now},
    )
    if not created:
        release.price_minor, release.currency = price_minor, currency
        release.status, release.updated_at = ReleaseStatus.ON_SALE, now
        release.save(update_fields=["price_minor", "currency", "status", "updated_at"])
    return release


@transaction.atomic
def release_withdraw(*, user: User, release: Release) -> Release:
    """Stop selling. Buyers keep their downloads."""
    release = Release.objects.select_for_update().get(pk=release.pk)
    if release.released_by_id != user.pk:
        raise NotFound("No such release among yours.", code="release_not_found")
    release.status, release.updated_at = ReleaseStatus.WITHDRAWN, clock.now()
    release.save(update_fields=["status", "updated_at"])
    return release


@dataclass(frozen=True)
class PurchaseResult:
    purchase: Purchase
    created: bool


def release_purchase(
    *, buyer: User, release: Release, expected_price_minor: int | None = None
) -> PurchaseResult:
    """Buy a release from the buyer's wallet, once: buying again returns the first purchase. The price is
    recorded as a sale of the work (split up its chain at settlement); a short wallet answers 402 and
    changes nothing.

    The release's status and price are read under its row lock, in the purchase's own transaction: a
    release withdrawn or repriced a moment ago is bought as it now stands, or not at all. A buyer who
    names the price they saw (`expected_price_minor`) is refused (409, nothing charged) when it changed.
    """
    existing = Purchase.objects.filter(release_id=release.pk, buyer=buyer).first()
    if existing is not None:
        return PurchaseResult(purchase=existing, created=False)
    try:
        with transaction.atomic():
            locked = Release.objects.select_for_update().select_related("work").get(pk=release.pk)
            existing = Purchase.objects.filter(release=locked, buyer=buyer).first()
            if existing is not None:
                return PurchaseResult(purchase=existing, created=False)
            if locked.status != ReleaseStatus.ON_SALE:
                raise Conflict("This release is no longer on sale.", code="release_not_on_sale")
            if locked.work.status == WorkStatus.BLOCKED:  # the work's row is locked with the release's
                raise Conflict("This release is blocked by a claim.", code="work_blocked")
            if locked.released_by_id == buyer.pk or locked.work.created_by_id == buyer.pk:
                raise Conflict("This is your own release.", code="own_release")
            if expected_price_minor is not None and expected_price_minor != locked.price_minor:
                raise Conflict(
                    "The price changed to "
                    f"{currencies.format_minor(locked.price_minor, locked.currency)}; confirm the new price.",
                    code="release_price_changed",
                    extra={"price_minor": locked.price_minor, "currency": locked.currency},
                )
            purchase = Purchase.objects.create(
                release=locked, buyer=buyer, amount_minor=locked.price_minor, currency=locked.currency
            )
            if locked.price_minor:
                sale_record(
                    work=locked.work,
                    buyer=wallet_get_or_create(user=buyer).organisation,
                    amount=Money(locked.price_minor, locked.currency),
                    sale_ref=f"purchase:{purchase.pk}",
                )
    except IntegrityError:  # the same buyer's concurrent request won
        won = Purchase.objects.get(release_id=release.pk, buyer=buyer)
        return PurchaseResult(purchase=won, created=False)
    return PurchaseResult(purchase=purchase, created=True)

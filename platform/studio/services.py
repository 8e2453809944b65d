"""Writes for the studio: wallets, accepting terms, generation jobs, releases and purchases.

Money invariants:
- the licence fee is charged once per grant, from the fan's wallet, in the transaction that activates the
  grant (royalties.licences: a grant is never active with its fee unpaid);
- a generation job charges its per-use prices (one metered access per use class the generator needs) once
  its result is made, under its grants' locks, and keeps them only if the derivative is registered: a job
  that fails before the charge (the generator's error, a vendor's timeout, a short balance, a revoked
  licence) charges nothing, and one that fails after it (signing, the timestamp server, the storage, a
  dead worker) has each charge refunded once, through the access API and the ledger (job_run);
- a job is charged at most once: its idempotency keys are used once, and a refunded access's key is never
  replayed;
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
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from access.services import AccessRequest, access_refund, access_request
from accounts.models import Role, User
from accounts.services import api_key_create, organisation_create
from catalog import consent, fingerprinting
from catalog.errors import media_error_to_api
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
from catalog.services import (
    ParentClaim,
    StoredFile,
    asset_register,
    derivative_create,
    file_discard,
    file_store,
)
from common import clock
from common import currency as currencies
from common.money import BPS_WHOLE, Money
from common.problems import ApiError, Conflict, Forbidden, NotFound
from matching import credentials
from media import provenance
from media.errors import MediaError
from media.generators import GeneratedMedia, GenerationFailed, GenerationRequest, Generator, ParentMedia
from media.generators.base import VOICE, InputSpec, metered_uses
from media.generators.voice_convert import PROFILE_KEY, VoiceConversion
from media.validation import Limits, inspect
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds
from royalties.licences import licence_accept, licence_pay
from royalties.revenue import sale_record
from royalties.reversal import RefundNotYet
from studio import generators, selectors, voice_profiles
from studio.models import (
    ApprovalStatus,
    GenerationJob,
    JobStatus,
    Purchase,
    Release,
    ReleaseApproval,
    ReleaseStatus,
    Wallet,
)

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


# How many of a voice's recordings a voice generator receives (the first ones, in upload order).
MAX_VOICE_RECORDINGS = 12


def _parent_assets(work: Work, generator: Generator) -> list[Asset]:
    """The parent's files the generator works from. A generator that needs the `voice` use receives the
    voice's recordings: every file of its kind on the work, or on its members for a collection (at most
    MAX_VOICE_RECORDINGS); any other generator receives one file (`_parent_asset`)."""
    if VOICE not in generator.use_classes:
        one = _parent_asset(work, generator.parent_kind)
        return [] if one is None else [one]
    kind = generator.parent_kind
    own = list(
        Asset.objects.filter(work=work, blob__kind=kind)
        .select_related("blob", "work")
        .order_by("id")[:MAX_VOICE_RECORDINGS]
    )
    if own or work.kind not in COLLECTION_KINDS:
        return own
    return list(
        Asset.objects.filter(work__in=work.members.all(), blob__kind=kind)
        .select_related("blob", "work")
        .order_by("work_id", "id")[:MAX_VOICE_RECORDINGS]
    )


@dataclass(frozen=True)
class _CheckedInput:
    name: str
    record: dict[str, object]
    data: bytes | None
    duration_s: float | None


def _check_inputs(
    specs: tuple[InputSpec, ...], title: str, inputs: Mapping[str, InputFile | str]
) -> list[_CheckedInput]:
    """Validate the fan's inputs like any upload; nothing is stored yet."""
    unknown = sorted(set(inputs) - {spec.name for spec in specs})
    if unknown:
        raise ApiError(
            f"The {title} generator takes no input named {', '.join(unknown)}.",
            code="unknown_input",
        )
    checked: list[_CheckedInput] = []
    for spec in specs:
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
                checked.append(_CheckedInput(spec.name, {"kind": "text", "text": text}, None, None))
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
        if info.duration_s is not None:
            record["duration_s"] = round(info.duration_s, 3)
        checked.append(_CheckedInput(spec.name, record, value.data, info.duration_s))
    return checked


def _save_inputs(checked: list[_CheckedInput]) -> dict[str, dict[str, object]]:
    stored: dict[str, dict[str, object]] = {}
    for item in checked:
        name = str(item.record.get("storage_name", ""))
        if item.data is not None and not default_storage.exists(name):
            default_storage.save(name, ContentFile(item.data))
        stored[item.name] = item.record
    return stored


def _store_inputs(
    generator: Generator, inputs: Mapping[str, InputFile | str]
) -> dict[str, dict[str, object]]:
    """Validate the fan's inputs like any upload and keep the files; refused inputs store nothing."""
    return _save_inputs(_check_inputs(generator.inputs, generator.title, inputs))


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


# The generator a composed job hands the first generator's result to, when the job names none.
DEFAULT_COMPOSE_GENERATOR = "audio-remix"


def composed_input(*, first: Generator, then: Generator) -> InputSpec | None:
    """The input of `then` that `first`'s result fills in a composed job: its first input of the kind
    `first` makes (the remix's `vocal`, for a voice conversion). None: they do not compose."""
    return next((spec for spec in then.inputs if spec.kind == first.output_kind), None)


def _licensed(
    *, user: User, grant_id: int, generator: Generator, territory: str, field: str = "grant"
) -> Grant:
    """The user's grant, checked for running `generator` on its work: the terms allow every use it needs
    (403 naming the term), the grant is active, the terms current and covering the territory, the creator
    still consents to each use (403), and the work has a file of the kind the generator works from."""
    grant = Grant.objects.select_related("offer__work__created_by").filter(pk=grant_id, licensee=user).first()
    if grant is None:
        raise NotFound("No such grant among yours.", code="grant_not_found", extra={"field": field})
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
    if offer.territories and territory not in offer.territories:
        raise Forbidden(
            f"The terms cover only {', '.join(offer.territories)}.",
            code="territory_not_allowed",
            extra={"term": "territories"},
        )
    for use in sorted(generator.use_classes):
        refusal = consent.use_refusal(
            work_id=work.pk, use_class=use, grant_fee_minor=grant.fee_minor, grant_expires_at=offer.expires_at
        )
        if refusal is not None:
            raise Forbidden(
                f"{refusal.detail} The {generator.title} generator needs it.",
                code=refusal.code,
                extra={"term": use, "work": work.pk, "offer": offer.pk},
            )
    if not _parent_assets(work, generator):
        raise ApiError(
            f"The {generator.title} generator works from {generator.parent_kind}; “{work.title}” has no "
            f"{generator.parent_kind} file.",
            code="generator_not_applicable",
            status_code=422,
        )
    return grant


def _check_limits(*, offers: list[Offer], checked: list[_CheckedInput], explicit: bool | None) -> None:
    """The limits the terms set on what is made under them (a voice offer's): no explicit lyrics (the fan
    must declare the content; explicit is refused) and the longest vocal. Refused before anything is
    stored or run."""
    for offer in offers:
        title = offer.work.title
        if not offer.explicit_content_allowed:
            if explicit is None:
                raise ApiError(
                    f"The terms of “{title}” do not allow explicit lyrics: declare whether yours are "
                    "explicit (`explicit`: true or false).",
                    code="explicit_declaration_required",
                    extra={"term": "explicit_content_allowed", "offer": offer.pk},
                )
            if explicit:
                raise Forbidden(
                    f"The terms of “{title}” do not allow explicit lyrics.",
                    code="explicit_not_allowed",
                    extra={"term": "explicit_content_allowed", "offer": offer.pk},
                )
        cap = offer.max_vocal_seconds
        if cap is None:
            continue
        for item in checked:
            if item.duration_s is not None and item.duration_s > cap:
                raise Forbidden(
                    f"The terms of “{title}” allow vocals of at most {cap} s; {item.name} lasts "
                    f"{item.duration_s:.1f} s.",
                    code="vocal_too_long",
                    extra={
                        "term": "max_vocal_seconds",
                        "max_vocal_seconds": cap,
                        "duration_s": round(item.duration_s, 3),
                        "input": item.name,
                        "offer": offer.pk,
                    },
                )


def job_create(
    *,
    user: User,
    grant_id: int,
    generator_name: str,
    inputs: Mapping[str, InputFile | str],
    title: str = "",
    territory: str = "",
    explicit: bool | None = None,
    compose_with: int | None = None,
    compose_generator: str = "",
) -> GenerationJob:
    """Queue a generation under the user's grant. Refused (changing nothing) when the generator is unknown,
    the terms do not allow a use it needs (403 naming the term), the creator withdrew consent for one
    (403), the grant is not active, an input is missing, not valid media or over the terms' limits (403
    naming the term), or the wallet cannot pay the run's per-use prices (402).

    A composed job (`compose_with`: a second grant of the user's) hands the generator's result to
    `compose_generator` (default `audio-remix`) run on that grant's work: both grants are checked alike,
    both generators' uses are charged on success, and the result derives from both works."""
    _require_maker(user)
    generator = generators.get(generator_name)
    if generator is None:
        raise ApiError(f"There is no generator named {generator_name!r}.", code="unknown_generator")
    territory = (territory or settings.STUDIO_TERRITORY).strip().upper()
    if not _COUNTRY.match(territory):
        raise ApiError("territory must be an ISO 3166-1 alpha-2 country code.", code="invalid_territory")
    grant = _licensed(user=user, grant_id=grant_id, generator=generator, territory=territory)
    offer, work = grant.offer, grant.offer.work
    stages: list[tuple[Grant, Generator]] = [(grant, generator)]
    specs = generator.inputs
    then: Generator | None = None
    if compose_with is not None:
        then = generators.get(compose_generator or DEFAULT_COMPOSE_GENERATOR)
        if then is None:
            raise ApiError(
                f"There is no generator named {compose_generator!r}.",
                code="unknown_generator",
                extra={"field": "compose_generator"},
            )
        filled = composed_input(first=generator, then=then)
        if filled is None:
            raise ApiError(
                f"The {then.title} generator takes no {generator.output_kind} input for the "
                f"{generator.title} generator's result.",
                code="generators_do_not_compose",
            )
        second = _licensed(
            user=user, grant_id=compose_with, generator=then, territory=territory, field="compose_with"
        )
        if second.offer.work_id == work.pk:
            raise ApiError("A composed job needs two different works.", code="duplicate_parent")
        if second.offer.currency != offer.currency:
            raise ApiError(
                f"The two works are priced in {offer.currency} and {second.offer.currency}; a composed job "
                "is paid in one currency.",
                code="currency_mismatch",
            )
        shares = offer.derivative_share_bps + second.offer.derivative_share_bps
        if shares > BPS_WHOLE:
            raise ApiError(
                f"The two works' shares add up to {shares} basis points, over 100% of the result's revenue.",
                code="royalty_stack_over_100",
            )
        stages.append((second, then))
        own = {spec.name for spec in specs}
        specs = specs + tuple(s for s in then.inputs if s.name != filled.name and s.name not in own)
    wallet = wallet_get_or_create(user=user)
    price = sum(job_price_minor(generator=g, offer=gr.offer) for gr, g in stages)
    if price and any(gr.organisation_id != wallet.organisation_id for gr, _ in stages):
        raise Conflict(
            "This generator is paid per use from your studio wallet: accept the terms from the studio so "
            "the licence is held by your wallet.",
            code="grant_not_in_wallet",
        )
    checked = _check_inputs(specs, generator.title, inputs)
    _check_limits(offers=[gr.offer for gr, _ in stages], checked=checked, explicit=explicit)
    stored = _save_inputs(checked)
    with transaction.atomic():
        paid: list[Grant] = []
        for held, _ in stages:
            if held.status == GrantStatus.PENDING_PAYMENT:  # approved since it was accepted: pay it now
                held = licence_pay(grant=held, user=user, organisation=wallet.organisation).grant
            paid.append(held)
        if price and selectors.wallet_available(user=user, currency=offer.currency) < price:
            raise InsufficientFunds(
                f"A run of the {generator.title} generator costs "
                f"{currencies.format_minor(price, offer.currency)}; top up your wallet.",
                extra={"price_minor": price, "currency": offer.currency},
            )
        default_title = f"{work.title} ({generator.title.lower()})"
        if then is not None:
            default_title = f"{stages[1][0].offer.work.title} in the voice of {work.title}"
        job = GenerationJob.objects.create(
            fan=user,
            grant=paid[0],
            generator=generator.name,
            compose_grant=paid[1] if then is not None else None,
            compose_generator=then.name if then is not None else "",
            explicit=explicit,
            title=(title.strip() or default_title)[:200],
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
    """Maps a generator's 0-100 onto its part of the job's generation span (the whole span, or one part of
    it per generator of a composed job), writing only when something changed."""

    def __init__(self, job_id: int, start: int = _GENERATION_START, end: int = _GENERATION_END) -> None:
        self.job_id = job_id
        self.start, self.end = start, end
        self.last: tuple[int, str] | None = None

    def __call__(self, percent: int, stage: str) -> None:
        scaled = self.start + round((self.end - self.start) * max(0, min(100, percent)) / 100)
        if (scaled, stage) != self.last:
            self.last = (scaled, stage)
            _set_progress(self.job_id, scaled, stage)


def _read(storage_name: str) -> bytes:
    with default_storage.open(storage_name, "rb") as handle:
        return bytes(handle.read())


def job_run(*, job_id: int) -> GenerationJob | None:
    """Run a queued job (the Celery task's body). Idempotent: a job that is not queued is left alone.

    Once the generator made the result, it is delivered in three steps, so that nothing slow runs while
    the grant is locked (signing may call a remote timestamp server; the storage may be remote too):
    1. `_charge`, one transaction: the job and its grants locked, the licence checked again, each metered
       use charged through the access API, the charges and the manifest's licence recorded on the job;
    2. `_sign_and_store`, outside any transaction: the manifest signed into the file, the file stored;
    3. `_register`, one short transaction: the derivative and its asset registered, the job's result and
       price recorded.
    Any failure marks the job failed with a message for the fan (`_fail`); one after step 1 refunds the
    charges in the transaction that marks it failed, and removes a file stored in step 2, so a failed job
    costs nothing and leaves nothing behind."""
    started = GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=clock.now(), progress=1, stage="Starting"
    )
    if not started:
        return None
    job = GenerationJob.objects.select_related(
        "grant__offer__work__created_by", "compose_grant__offer__work__created_by", "fan"
    ).get(pk=job_id)
    try:
        stages = _stages(job)
        fan_inputs: dict[str, bytes | str] = {
            name: (str(item["text"]) if item["kind"] == "text" else _read(str(item["storage_name"])))
            for name, item in job.inputs.items()
        }
        span = (_GENERATION_END - _GENERATION_START) // len(stages)
        result: GeneratedMedia | None = None
        details: dict[str, object] = {}
        for number, stage in enumerate(stages):
            taken = {spec.name for spec in stage.generator.inputs}
            stage_inputs = {name: value for name, value in fan_inputs.items() if name in taken}
            if result is not None and stage.filled is not None:
                stage_inputs[stage.filled] = result.data  # the previous generator's result
            request = GenerationRequest(
                parents=[
                    ParentMedia(a.work_id, a.work.title, a.blob.media_type, d) for a, d in stage.parents
                ],
                inputs=stage_inputs,
                context=_licence_context(job, stage.generator, stage.grant),
                prepared=_prepared(stage),
            )
            start = _GENERATION_START + number * span
            result = stage.generator.run(request, _GeneratorProgress(job.pk, start, start + span))
            details[stage.generator.name] = dict(result.details)
        assert result is not None
        if len(stages) > 1:  # each generator's figures under its name
            result = GeneratedMedia(result.data, result.media_type, result.extension, details=details)
        credentials.signing_credentials()  # a site that cannot sign fails here, before any charge
        licence = _charge(job=job, stages=stages)
        stored, manifest = _sign_and_store(job=job, stages=stages, result=result, licence=licence)
        try:
            asset = _register(job=job, stages=stages, result=result, stored=stored, manifest=manifest)
        except Exception:
            _discard(stored)
            raise
        _set_progress(job.pk, 92, "Fingerprinting and indexing the result")
        fingerprinting.asset_fingerprint(asset_id=asset.pk)
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
    """Close jobs whose worker stopped mid-run (killed, out of memory, machine restarted), and finish
    refunds that had to wait. Returns how many jobs it changed.

    A job running for longer than STUDIO_JOB_TIMEOUT_S that registered its result is marked succeeded (its
    charge and its result committed before); one that did not is failed (`_fail`), and if it was charged
    (its worker stopped between the charge and the registration) its charges are refunded then. A failed
    job whose refund had to wait (a claim held the charge's revenue) is refunded once it can be."""
    cutoff = clock.now() - timedelta(seconds=settings.STUDIO_JOB_TIMEOUT_S)
    stuck = GenerationJob.objects.filter(status=JobStatus.RUNNING, started_at__lt=cutoff)
    changed = stuck.filter(result_work__isnull=False).update(
        status=JobStatus.SUCCEEDED, progress=100, stage="Done", finished_at=clock.now()
    )
    for job in list(stuck.filter(result_work__isnull=True)):
        changed += _close_failed(
            job, "worker_stopped", "The worker stopped while running this job; start it again."
        )
    owed = GenerationJob.objects.filter(
        status=JobStatus.FAILED, charged_at__isnull=False, refunded_at__isnull=True, result_work__isnull=True
    ).values_list("pk", flat=True)
    for job_id in list(owed):
        with transaction.atomic():
            locked = GenerationJob.objects.select_for_update().select_related("fan").get(pk=job_id)
            if locked.refunded_at is None and _refund(locked):
                changed += 1
    return changed


def _fail(job: GenerationJob, code: str, message: str) -> GenerationJob:
    _close_failed(job, code, message)
    job.refresh_from_db()
    return job


def _close_failed(job: GenerationJob, code: str, message: str) -> bool:
    """Mark a running job failed with `message` for the fan, saying what became of its money: a job
    charged whose result was not registered has its charges refunded in the same transaction (`_refund`).
    A job already closed (by the sweep, or by its worker while the sweep waited) is left as it is. Whether
    this closed it."""
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().select_related("fan").get(pk=job.pk)
        if locked.status != JobStatus.RUNNING:
            return False
        price = sum(int(charge["price_minor"]) for charge in locked.charges)
        shown = currencies.format_minor(price, locked.currency)
        if locked.result_work_id is not None:  # delivered (the failure came after): the price stands
            money = ""
        elif locked.charged_at is None:
            money = "Nothing was charged."
        elif _refund(locked):
            money = "Nothing was charged" + (
                f": the {shown} taken for it was refunded to your wallet." if price else "."
            )
        else:
            money = f"The {shown} taken for it will be refunded to your wallet."
        GenerationJob.objects.filter(pk=locked.pk).update(
            status=JobStatus.FAILED,
            error_code=code[:40],
            error=f"{message} {money}".strip()[:500],
            finished_at=clock.now(),
            stage="Failed",
        )
    return True


def _refund(job: GenerationJob) -> bool:
    """Give back each charge of a job that was charged and will not be delivered (locked by the caller),
    through the access API's refund: the grant's quota use, the month's spend and the money (through the
    ledger), once per charge whatever is retried. Whether all are back (`refunded_at` is then set); a
    charge whose revenue a claim holds waits, and the sweep asks again."""
    if job.refunded_at is not None:
        return True
    wallet = wallet_get_or_create(user=job.fan)  # made by the charge, if not before
    complete = True
    for charge in job.charges:
        try:
            access_refund(
                organisation=wallet.organisation,
                idempotency_key=str(charge["idempotency_key"]),
                reason=f"studio job #{job.pk} failed before its result was delivered",
            )
        except RefundNotYet:
            complete = False
    if complete:
        GenerationJob.objects.filter(pk=job.pk).update(refunded_at=clock.now())
    return complete


def terms_url(offer: Offer) -> str:
    return f"{settings.SITE_URL}/api/v1/offers/{offer.pk}/rsl"


def _licence_context(job: GenerationJob, generator: Generator, grant: Grant) -> dict[str, object]:
    offer = grant.offer
    return {
        "platform": settings.SITE_URL,
        "job": job.pk,
        "grant": grant.pk,
        "offer": offer.pk,
        "offer_version": offer.version,
        "terms_url": terms_url(offer),
        "work": offer.work_id,
        "uses": sorted(generator.use_classes),
        "price_minor": job_price_minor(generator=generator, offer=offer),
        "currency": offer.currency,
        "payment": "charged through Tribute's access API when the result is delivered",
        "limits": {
            "explicit_content_allowed": offer.explicit_content_allowed,
            "explicit_declared": job.explicit,
            "max_vocal_seconds": offer.max_vocal_seconds,
            "release_approval_required": offer.release_approval_required,
        },
    }


@dataclass(frozen=True)
class _Stage:
    """One generator of a job, the grant it runs under, the parent files it receives, and (in a composed
    job) the input the previous generator's result fills."""

    grant: Grant
    generator: Generator
    parents: list[tuple[Asset, bytes]]
    filled: str | None = None
    # The access API's idempotency keys of this stage's charges start with this.
    key_prefix: str = ""


def _stages(job: GenerationJob) -> list[_Stage]:
    pairs: list[tuple[Grant, str]] = [(job.grant, job.generator)]
    if job.compose_grant is not None:
        pairs.append((job.compose_grant, job.compose_generator))
    stages: list[_Stage] = []
    previous: Generator | None = None
    for number, (grant, name) in enumerate(pairs):
        generator = generators.get(name)
        if generator is None:
            raise GenerationFailed("This generator is no longer offered here.", code="unknown_generator")
        assets = _parent_assets(grant.offer.work, generator)
        if not assets:
            raise GenerationFailed(
                "The licensed work no longer has a file to work from.", code="parent_media_missing"
            )
        filled = None
        if previous is not None:
            spec = composed_input(first=previous, then=generator)
            if spec is None:
                raise GenerationFailed(
                    "These generators no longer compose.", code="generators_do_not_compose"
                )
            filled = spec.name
        stages.append(
            _Stage(
                grant=grant,
                generator=generator,
                parents=[(asset, _read(asset.blob.storage_name)) for asset in assets],
                filled=filled,
                key_prefix=f"studio-job-{job.pk}" if number == 0 else f"studio-job-{job.pk}-compose",
            )
        )
        previous = generator
    return stages


def _prepared(stage: _Stage) -> dict[str, object]:
    """What the stage's generator need not learn again: the voice generator's learned voice, kept with
    the VOICE work (studio.voice_profiles)."""
    if not isinstance(stage.generator, VoiceConversion):
        return {}
    return {PROFILE_KEY: voice_profiles.profile_for(stage.grant.offer.work_id, stage.parents)}


def _attribution(stages: list[_Stage]) -> str:
    names = " and ".join(dict.fromkeys(stage.generator.title for stage in stages))
    made = f"Made on Tribute with the {names} generator{'s' if len(stages) > 1 else ''}."
    credits = [
        f"“{stage.grant.offer.work.title}” by {stage.grant.offer.work.created_by.public_name}, licensed on "
        f"Tribute (grant #{stage.grant.pk}, terms version {stage.grant.offer.version})"
        for stage in stages
        if stage.grant.offer.attribution_required
    ]
    if not credits:
        return made
    return f"Based on {' and '.join(credits)}. {made}"


def _charge(*, job: GenerationJob, stages: list[_Stage]) -> dict[str, object]:
    """Step 1 of delivering a result, in one transaction: lock the job and its grants (in id order), check
    that the job still runs and was never charged and that each grant is still active, charge each
    metered use through the access API from the wallet (its quota, spend caps and balance checked there,
    under the grant's lock, so two jobs on one grant cannot both pass), and record the charges and the
    licence assertion the manifest will carry. Answers that assertion.

    A job charged once is never charged again: its idempotency keys (`studio-job-<id>-<use>`) are spent,
    and a refunded access's key is refused by the access API rather than replayed."""
    _set_progress(job.pk, 82, "Charging the per-use prices")
    with transaction.atomic():
        state = GenerationJob.objects.select_for_update().values_list("status", "charged_at").get(pk=job.pk)
        if state != (JobStatus.RUNNING, None):
            raise GenerationFailed("This job was closed while it ran; start it again.", code="job_closed")
        locked = {
            grant.pk: grant
            for grant in Grant.objects.select_for_update()
            .select_related("offer__work__created_by")
            .filter(pk__in=[stage.grant.pk for stage in stages])
            .order_by("pk")
        }
        for stage in stages:
            if locked[stage.grant.pk].status != GrantStatus.ACTIVE:
                raise GenerationFailed("The licence was revoked while the job ran.", code="grant_not_active")
        wallet = wallet_get_or_create(user=job.fan)
        receipts: list[str] = []
        access_ids: list[str] = []
        charges: list[dict[str, object]] = []  # as the manifest names them
        recorded: list[dict[str, object]] = []  # as the job keeps them, to refund them if need be
        for stage in stages:
            offer = locked[stage.grant.pk].offer
            for use in metered_uses(stage.generator):
                key = f"{stage.key_prefix}-{use}"
                answer = access_request(
                    organisation=wallet.organisation,
                    api_key=wallet.api_key,
                    idempotency_key=key,
                    request=AccessRequest(work_id=offer.work_id, use_class=use, territory=job.territory),
                )
                body = json.loads(answer.body)
                receipts.append(str(body["receipt"]))
                access_ids.append(str(body["access_id"]))
                charge: dict[str, object] = {
                    "work": offer.work_id,
                    "use": use,
                    "price_minor": int(body["price_minor"]),
                    "access_id": str(body["access_id"]),
                }
                charges.append(charge)
                recorded.append({**charge, "idempotency_key": key, "receipt": str(body["receipt"])})
        first = locked[stages[0].grant.pk]
        offer = first.offer
        licence: dict[str, object] = {
            "platform": settings.SITE_URL,
            "grant": first.pk,
            "offer": offer.pk,
            "offer_version": offer.version,
            "terms_url": terms_url(offer),
            "licensee": f"user:{job.fan_id}",
            "parents": [
                {
                    "work": locked[stage.grant.pk].offer.work_id,
                    "title": locked[stage.grant.pk].offer.work.title,
                    "share_bps": locked[stage.grant.pk].offer.derivative_share_bps,
                    "grant": stage.grant.pk,
                    "offer": locked[stage.grant.pk].offer_id,
                    "offer_version": locked[stage.grant.pk].offer.version,
                    "terms_url": terms_url(locked[stage.grant.pk].offer),
                    "uses": sorted(stage.generator.use_classes),
                }
                for stage in stages
            ],
            "generator": " + ".join(stage.generator.name for stage in stages),
            "job": job.pk,
            "access_ids": access_ids,
            "receipts": receipts,
            "charges": charges,
        }
        if job.explicit is not None:
            licence["explicit_declared"] = job.explicit
        GenerationJob.objects.filter(pk=job.pk).update(
            charges=recorded,
            licence=licence,
            charged_at=clock.now(),
            progress=84,
            stage="Signing the content credentials",
        )
    return licence


def _sign_and_store(
    *, job: GenerationJob, stages: list[_Stage], result: GeneratedMedia, licence: Mapping[str, object]
) -> tuple[StoredFile, dict[str, object]]:
    """Step 2, outside any transaction (nothing is locked while the signer may wait for a timestamp
    server, or the storage for a disk): sign the manifest into the result and store the file, not yet
    referred to by any row. Answers the stored file and the manifest's summary. A failure stores nothing
    (a partly written file is removed)."""
    ingredients: list[provenance.Ingredient] = []
    for stage in stages:
        for asset, data in stage.parents:
            ingredients.append(
                provenance.Ingredient(
                    title=f"{asset.work.title} (work #{asset.work_id})",
                    media_type=asset.blob.media_type,
                    data=data,
                    relationship="parentOf",
                )
            )
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
        generator=" + ".join(stage.generator.name for stage in stages),
    )
    summary = credentials.manifest_of(signed, result.media_type)
    _set_progress(job.pk, 88, "Storing the result")
    try:
        stored = file_store(data=signed, work_kind=stages[-1].generator.output_kind)
    except ApiError:
        raise
    except Exception as exc:
        logger.exception("studio job %s: the result could not be stored", job.pk)
        raise GenerationFailed(
            "The result could not be stored (the operator has been told); try again later.",
            code="storage_failed",
        ) from exc
    return stored, summary.as_dict() if summary is not None else {}


def _register(
    *,
    job: GenerationJob,
    stages: list[_Stage],
    result: GeneratedMedia,
    stored: StoredFile,
    manifest: dict[str, object],
) -> Asset:
    """Step 3, one short transaction of row writes: with the job locked and still running, charged and not
    refunded (a job the sweep closed meanwhile was refunded: its result is dropped), register the
    derivative with its parents (each grant checked active again) and its stored file, and record the
    job's result, receipts and price."""
    _set_progress(job.pk, 89, "Registering the derivative")
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != JobStatus.RUNNING or locked.charged_at is None or locked.refunded_at is not None:
            raise GenerationFailed("This job was closed while it ran; start it again.", code="job_closed")
        work = derivative_create(
            user=job.fan,
            title=job.title,
            kind=stages[-1].generator.output_kind,
            parents=[
                ParentClaim(work_id=stage.grant.offer.work_id, grant_id=stage.grant.pk) for stage in stages
            ],
            description=_attribution(stages),
            tags=["tribute-studio", *(stage.generator.name for stage in stages)],
        )
        # The job fingerprints its result itself (job_run), so no fingerprinting task is queued too.
        upload = asset_register(
            work=work,
            user=job.fan,
            stored=stored,
            filename=f"{_slug(job.title)}.{result.extension}",
            fingerprint_later=False,
        )
        GenerationJob.objects.filter(pk=job.pk).update(
            result_work=work,
            result_asset=upload.asset,
            receipts=[str(charge["receipt"]) for charge in locked.charges],
            charged_minor=sum(int(charge["price_minor"]) for charge in locked.charges),
            details=dict(result.details),
            manifest=manifest,
            progress=90,
            stage="Registered the derivative",
        )
    job.refresh_from_db()
    return upload.asset


def _discard(stored: StoredFile) -> None:
    """Remove the stored result of a job that will not register it; a file that cannot be removed now is
    left to the unreferenced-blob sweep (catalog.storage)."""
    try:
        file_discard(stored=stored)
    except Exception:
        logger.exception("the stored result %s could not be removed; the blob sweep will", stored.blob.sha256)


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
    status = _approval_status(release, now)
    if status == ReleaseStatus.REFUSED:
        refusal = release.approvals.filter(status=ApprovalStatus.REFUSED).select_related("work").first()
        raise Conflict(
            f"The owner of “{refusal.work.title if refusal else ''}” refused this release: "
            f"{refusal.reason if refusal else ''}",
            code="release_refused",
            extra={"reason": refusal.reason if refusal else ""},
        )
    if created:
        if release.status != status:
            release.status = status
            release.save(update_fields=["status"])
    else:
        release.price_minor, release.currency = price_minor, currency
        release.status, release.updated_at = status, now
        release.save(update_fields=["price_minor", "currency", "status", "updated_at"])
    _publish_when_on_sale(release)
    return release


def _publish_when_on_sale(release: Release) -> None:
    """A work on sale to everyone is no private draft: its draft is published (one waiting for approval
    stays a draft until it goes on sale)."""
    if release.status == ReleaseStatus.ON_SALE and release.work.status == WorkStatus.DRAFT:
        release.work.status = WorkStatus.PUBLISHED
        release.work.save(update_fields=["status", "updated_at"])


def _approval_status(release: Release, now: datetime) -> str:
    """The status a release (being put on sale) takes: each parent whose granted terms require approval
    before release has an approval row (made here, waiting); on sale once all are given, refused if one
    was refused, waiting otherwise."""
    links = WorkParent.objects.filter(
        child_id=release.work_id, grant__offer__release_approval_required=True
    ).select_related("parent")
    for link in links:
        ReleaseApproval.objects.get_or_create(
            release=release,
            work=link.parent,
            defaults={"owner_id": link.parent.created_by_id, "created_at": now},
        )
    statuses = set(release.approvals.values_list("status", flat=True))
    if ApprovalStatus.REFUSED in statuses:
        return ReleaseStatus.REFUSED
    if ApprovalStatus.PENDING in statuses:
        return ReleaseStatus.PENDING_APPROVAL
    return ReleaseStatus.ON_SALE


@transaction.atomic
def release_decide(*, user: User, release: Release, approve: bool, reason: str = "") -> Release:
    """The owner of a parent whose terms require approval before release (a voice's owner) approves or
    refuses a release made from it. Approved by every owner it waits for, it goes on sale; refused, it
    cannot be sold, and the refusal's reason is shown to the maker. Only such an owner decides (403 for
    anyone else who can see the release)."""
    release = Release.objects.select_for_update().select_related("work").get(pk=release.pk)
    approvals = list(ReleaseApproval.objects.select_for_update().filter(release=release, owner=user))
    if not approvals:
        raise Forbidden(
            "Only the owner of a work this release derives from, whose terms need approval, decides on it.",
            code="not_an_approver",
        )
    reason = reason.strip()
    if not approve and not reason:
        raise ApiError("Say why you refuse this release (`reason`).", code="reason_required")
    if any(a.status != ApprovalStatus.PENDING for a in approvals):
        raise Conflict("You already decided on this release.", code="already_decided")
    now = clock.now()
    for approval in approvals:
        approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REFUSED
        approval.reason, approval.decided_at = reason[:500], now
        approval.save(update_fields=["status", "reason", "decided_at"])
    if release.status == ReleaseStatus.PENDING_APPROVAL:
        status = _approval_status(release, now)
        release.status, release.updated_at = status, now
        release.save(update_fields=["status", "updated_at"])
        _publish_when_on_sale(release)
    elif not approve and release.status == ReleaseStatus.ON_SALE:  # not reachable unless data was edited
        release.status, release.updated_at = ReleaseStatus.REFUSED, now
        release.save(update_fields=["status", "updated_at"])
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

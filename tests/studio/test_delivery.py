"""Delivering a job's result in three steps: the charge under the grant's lock, then signing and storing with
no transaction open, then the registration. A failure after the charge (the timestamp server down, a full
disk, a worker that stops) refunds each charge exactly once and leaves no file, work or asset behind; a job
is never charged twice however it is retried; two jobs on one grant still keep its quota and the balance.

The generator here is an AI vendor's service on 127.0.0.1 (tests/studio/vendor.py), configured with two
metered uses, so each job makes two charges: ai-generate 0.40 and style 0.25."""

from __future__ import annotations

import dataclasses
import errno
import io
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import connection
from PIL import Image, ImageOps

from access.models import AccessEvent, AccessRefund
from catalog.models import Asset, Blob, Grant, Work, WorkParent, WorkStatus
from catalog.services import Terms, offer_publish
from common import clock
from common.money import Money
from matching import credentials
from media import provenance
from royalties.ledger import ledger_check
from royalties.models import JournalTransaction
from royalties.settlement import revenue_settle
from studio import selectors
from studio.models import GenerationJob, JobStatus
from studio.services import job_create, jobs_sweep_stuck, terms_accept, wallet_fund
from studio.tasks import run_generation_job
from tests import factories
from tests.royalties.builders import balance, payable

PRICE = 65  # ai-generate 40 + style 25, per job


@pytest.fixture
def studio(image_catalogue, external_settings, vendor_service, photos):
    """The image catalogue with an AI vendor that answers the artwork, mirrored, and charges two uses."""
    external_settings(use_classes=["derivative", "ai-generate", "style"])
    with Image.open(io.BytesIO(photos["Garden"])) as image:
        buffer = io.BytesIO()
        ImageOps.mirror(image).save(buffer, "PNG")
    vendor_service.mode.update({"body": buffer.getvalue(), "content_type": "image/png"})
    return image_catalogue


def priced(cat, **terms):
    return offer_publish(
        work=cat.work,
        user=cat.creator,
        terms=Terms(
            currency="USD",
            uses={"derivative": 0, "ai-generate": 40, "style": 25},
            derivative_share_bps=3000,
            commercial_use=True,
            **terms,
        ),
    )


def queue(cat, offer) -> GenerationJob:
    grant = terms_accept(user=cat.fan, offer=offer).grant  # no licence fee: the same grant each time
    return job_create(
        user=cat.fan,
        grant_id=grant.pk,
        generator_name="acme-image",
        inputs={"prompt": "the garden under snow"},
    )


def jobs_sweep_later() -> int:
    """The stuck-job sweep, run once the timeout has passed."""
    later = clock.now() + timedelta(seconds=settings.STUDIO_JOB_TIMEOUT_S + 60)
    with time_machine.travel(later, tick=False):
        return jobs_sweep_stuck()


def run(job: GenerationJob) -> GenerationJob:
    run_generation_job(job.pk)  # the Celery task's body
    job.refresh_from_db()
    return job


def wallet(cat) -> int:
    return selectors.wallet_available(user=cat.fan, currency="USD")


def access_refunds() -> int:
    return JournalTransaction.objects.filter(key__startswith="refund:access:").count()


def stored_files() -> list[str]:
    root = Path(FileSystemStorage().location) / "blobs"
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def made() -> tuple[int, int, int, int, list[str]]:
    """What a delivered result would add: works, assets, blobs, parent links and stored files."""
    return (
        Work.objects.count(),
        Asset.objects.count(),
        Blob.objects.count(),
        WorkParent.objects.count(),
        stored_files(),
    )


@pytest.fixture
def timestamp_server_down(monkeypatch):
    """The signing credentials name a timestamp server that does not answer (a closed port here)."""
    development = credentials.signing_credentials()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = dataclasses.replace(development, timestamp_url=f"http://127.0.0.1:{port}/timestamp")
    monkeypatch.setattr(credentials, "signing_credentials", lambda: down)


@pytest.fixture
def disk_full(monkeypatch):
    """The storage runs out of space half-way through writing a blob (uploads' inputs still fit)."""
    write = FileSystemStorage._save  # type: ignore[attr-defined]  # (the stubs omit it)

    def half_then_full(self, name, content):
        if not name.startswith("blobs/"):
            return write(self, name, content)
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.read()
        path.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", half_then_full)


def assert_refunded_once_and_nothing_left(cat, job, *, wallet_before, made_before) -> None:
    assert job.status == JobStatus.FAILED and job.result_work_id is None
    refunded = "Nothing was charged: the 0.65 USD taken for it was refunded to your wallet."
    assert job.error.endswith(refunded), job.error
    assert job.charged_minor == 0 and job.receipts == []
    assert job.charged_at is not None and job.refunded_at is not None
    # Both uses were charged through the access API, and each was refunded once.
    assert AccessEvent.objects.filter(organisation__personal_wallet__user=cat.fan).count() == 2
    assert (AccessRefund.objects.count(), access_refunds()) == (2, 2)
    assert wallet(cat) == wallet_before
    assert Grant.objects.get(pk=job.grant_id).accesses_used == 0
    # Nobody keeps any of the money: the creator's share and the fee went back with it.
    revenue_settle()
    assert (payable(cat.creator), balance("platform_fee:USD")) == (0, 0)
    assert ledger_check().clean
    # No derivative, no asset, no blob, no file (not even the half written one).
    assert made() == made_before

    # Nothing runs or refunds twice: the task redelivered, the sweep.
    run_generation_job(job.pk)
    assert jobs_sweep_stuck() == 0
    assert (AccessRefund.objects.count(), access_refunds(), wallet(cat)) == (2, 2, wallet_before)


def test_a_signing_failure_after_the_charge_refunds_it_once_and_leaves_nothing(studio, timestamp_server_down):
    cat = studio
    job = queue(cat, priced(cat))
    before = (wallet(cat), made())

    job = run(job)

    assert job.error_code == "provenance_failed"
    assert job.error.startswith("The content credentials could not be made:"), job.error
    assert_refunded_once_and_nothing_left(cat, job, wallet_before=before[0], made_before=before[1])


def test_a_storage_failure_after_the_charge_refunds_it_once_and_leaves_no_file(studio, disk_full):
    cat = studio
    job = queue(cat, priced(cat))
    before = (wallet(cat), made())

    job = run(job)

    assert job.error_code == "storage_failed", job.error
    assert_refunded_once_and_nothing_left(cat, job, wallet_before=before[0], made_before=before[1])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit", ["quota", "balance"])
def test_the_grant_is_not_locked_while_signing_and_a_second_job_still_keeps_the_quota_and_balance(
    studio, monkeypatch, limit
):
    # Each job charges two uses. The quota allows two accesses, or the wallet holds one job's price: the
    # second job, run to its end while the first one is being signed, must be refused and charged nothing.
    cat = studio
    if limit == "balance":
        cat = dataclasses.replace(cat, fan=factories.fan(username="pat"))
        wallet_fund(user=cat.fan, amount=Money(PRICE, "USD"), external_ref="pat-1")
    offer = priced(cat, quota=2) if limit == "quota" else priced(cat)
    first, second = queue(cat, offer), queue(cat, offer)
    real_sign = provenance.sign
    seen: list[tuple[int, bool]] = []

    def signing(**kwargs):
        job_id = kwargs["licence"]["job"]
        seen.append((job_id, connection.in_atomic_block))
        if job_id == first.pk:
            run(second)  # the whole second job runs while the first is being signed
        return real_sign(**kwargs)

    monkeypatch.setattr(provenance, "sign", signing)

    first, second = run(first), run(second)

    assert seen == [(first.pk, False)]  # signed with no transaction open, so no lock held
    assert first.status == JobStatus.SUCCEEDED and first.charged_minor == PRICE, first.error
    assert second.status == JobStatus.FAILED
    assert second.error_code == ("quota_exhausted" if limit == "quota" else "insufficient_funds")
    assert second.error.endswith("Nothing was charged.") and second.charged_at is None
    assert AccessEvent.objects.count() == 2 and not AccessRefund.objects.exists()
    assert Grant.objects.get(pk=first.grant_id).accesses_used == 2
    assert wallet(cat) == {"quota": 1_000 - PRICE, "balance": 0}[limit]


def test_a_retried_job_is_never_charged_twice(studio, monkeypatch, timestamp_server_down):
    cat = studio
    job = queue(cat, priced(cat))
    before = (wallet(cat), made())
    job = run(job)
    assert job.error_code == "provenance_failed" and wallet(cat) == before[0]
    monkeypatch.undo()  # the timestamp server answers again

    # The same job run again, as a task queued twice would: its keys were spent and refunded, so it is
    # neither charged again nor delivered on the refunded receipts.
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    job = run(job)

    assert (job.status, job.error_code, job.result_work_id) == (JobStatus.FAILED, "job_closed", None)
    assert AccessEvent.objects.count() == 2 and (AccessRefund.objects.count(), access_refunds()) == (2, 2)
    assert wallet(cat) == before[0] and made() == before[1]
    # A new job is charged once, and delivered.
    again = run(queue(cat, priced(cat)))
    assert again.status == JobStatus.SUCCEEDED and again.charged_minor == PRICE, again.error
    assert wallet(cat) == before[0] - PRICE and AccessEvent.objects.count() == 4


class WorkerKilled(BaseException):
    """The worker process stops (killed, out of memory): no handler of the job runs."""


def test_a_worker_that_stops_between_the_charge_and_the_signing_is_refunded_by_the_sweep(studio, monkeypatch):
    cat = studio
    job = queue(cat, priced(cat))
    before = (wallet(cat), made())

    def killed(**kwargs):
        raise WorkerKilled

    monkeypatch.setattr(provenance, "sign", killed)
    with pytest.raises(WorkerKilled):
        run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.charged_at is not None
    assert wallet(cat) == before[0] - PRICE  # charged, not delivered

    run_generation_job(job.pk)  # the task redelivered (acks_late) leaves a started job alone
    assert jobs_sweep_stuck() == 0  # and the sweep waits for the timeout
    assert (AccessEvent.objects.count(), wallet(cat)) == (2, before[0] - PRICE)

    assert jobs_sweep_later() == 1

    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "worker_stopped")
    assert job.error == (
        "The worker stopped while running this job; start it again. "
        "Nothing was charged: the 0.65 USD taken for it was refunded to your wallet."
    )
    assert wallet(cat) == before[0] and made() == before[1]
    assert jobs_sweep_later() == 0 and access_refunds() == 2
    assert ledger_check().clean


def test_a_job_the_sweep_closed_while_it_was_signed_registers_nothing_and_keeps_no_file(studio, monkeypatch):
    cat = studio
    job = queue(cat, priced(cat))
    before = (wallet(cat), made())
    real_sign = provenance.sign

    def slow_signing(**kwargs):
        # The signer waits so long (a timestamp server that does not answer) that the sweep takes the job
        # for one whose worker died, and refunds it; then the signature comes.
        assert jobs_sweep_later() == 1
        return real_sign(**kwargs)

    monkeypatch.setattr(provenance, "sign", slow_signing)
    job = run(job)

    assert (job.status, job.error_code, job.result_work_id) == (JobStatus.FAILED, "worker_stopped", None)
    assert (AccessRefund.objects.count(), access_refunds()) == (2, 2)
    assert wallet(cat) == before[0] and made() == before[1]  # the stored result was removed


def test_a_refund_a_claim_holds_is_finished_by_the_sweep_once_the_block_is_lifted(studio, monkeypatch):
    cat = studio
    job = queue(cat, priced(cat))
    before = wallet(cat)

    def blocked_then_failing(**kwargs):
        # A claim blocks the parent while the result is being signed, and the signing fails.
        Work.objects.filter(pk=cat.work.pk).update(status=WorkStatus.BLOCKED)
        raise provenance.ProvenanceError("the signer is unavailable")

    monkeypatch.setattr(provenance, "sign", blocked_then_failing)
    job = run(job)

    assert job.status == JobStatus.FAILED and job.refunded_at is None
    assert job.error.endswith("The 0.65 USD taken for it will be refunded to your wallet."), job.error
    assert wallet(cat) == before - PRICE
    assert jobs_sweep_later() == 0  # still held by the block

    Work.objects.filter(pk=cat.work.pk).update(status=WorkStatus.PUBLISHED)
    assert jobs_sweep_later() == 1

    job.refresh_from_db()
    assert job.refunded_at is not None and wallet(cat) == before
    assert (AccessRefund.objects.count(), access_refunds()) == (2, 2)
    assert jobs_sweep_later() == 0
    revenue_settle()
    assert (payable(cat.creator), balance("platform_fee:USD")) == (0, 0)
    assert ledger_check().clean

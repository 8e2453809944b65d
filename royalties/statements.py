"""Statements: a payee's earnings per period, chained by digest and checkable against the ledger."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from common import clock, locks
from common import currency as currencies
from common.csvsafe import SafeCsvWriter
from common.problems import ApiError, Conflict
from royalties import selectors
from royalties.models import (
    Statement,
    StatementLine,
    TransactionKind,
)

STATEMENT_FORMAT = "tribute-statement-1"


def statement_canonical(
    *,
    user_id: int,
    currency: str,
    period_start: datetime,
    period_end: datetime,
    opening_minor: int,
    closing_minor: int,
    lines: Sequence[dict[str, object]],
    previous_digest: str,
) -> bytes:
    """The bytes a statement's digest is taken over: sorted-key compact JSON, times in UTC."""
    document = {
        "format": STATEMENT_FORMAT,
        "payee": user_id,
        "currency": currency,
        "period_start": period_start.astimezone(UTC).isoformat(),
        "period_end": period_end.astimezone(UTC).isoformat(),
        "opening_minor": opening_minor,
        "closing_minor": closing_minor,
        "lines": [
            [line["work"], line["work_title"], line["source"], line["kind"], line["amount_minor"]]
            for line in lines
        ],
        "previous_digest": previous_digest,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@transaction.atomic
def statement_generate(
    *, user: User, currency: str, period_end: datetime, period_start: datetime | None = None
) -> Statement:
    """The payee's next statement in `currency`, up to `period_end` (not in the future).

    Statements follow each other without gaps: a statement starts where the previous one ended, and its
    digest covers the previous digest, so changing any statement breaks every later one.
    """
    if not currencies.is_supported(currency):
        raise ApiError(f"Currency {currency} is not supported.", code="unsupported_currency")
    if timezone.is_naive(period_end) or (period_start is not None and timezone.is_naive(period_start)):
        raise ApiError("Times need a zone.", code="naive_datetime")
    if period_end > clock.now():
        raise ApiError("A statement cannot cover the future.", code="period_in_future")
    # Wait for every journal transaction in flight to commit, and hold back new ones until this statement
    # commits: whatever is dated before period_end is then committed and visible here, and whatever
    # commits later is dated after it (a statement never misses a settlement chunk, nor cuts one in two).
    locks.hold(locks.Serialised.LEDGER_WRITES)
    # One statement chain writer per payee. NO KEY UPDATE: rows naming the payee (a payout) may be written
    # meanwhile; only another statement of the payee waits.
    User.objects.select_for_update(no_key=True).get(pk=user.pk)
    previous = Statement.objects.filter(user=user, currency=currency).order_by("-period_end").first()
    if previous is not None:
        if period_start is not None and period_start != previous.period_end:
            raise Conflict(
                f"The next statement starts where the last one ended ({previous.period_end.isoformat()}).",
                code="statement_period_gap",
            )
        period_start = previous.period_end
    elif period_start is None:
        period_start = user.date_joined
    if period_end <= period_start:
        raise Conflict("The period is empty: it ends before it starts.", code="statement_period_empty")
    opening = selectors.payable_balance_before(user=user, currency=currency, moment=period_start)
    lines = selectors.statement_lines_from_ledger(
        user=user, currency=currency, start=period_start, end=period_end
    )
    earned = sum(int(line["amount_minor"]) for line in lines if line["kind"] == TransactionKind.SETTLEMENT)
    other = sum(int(line["amount_minor"]) for line in lines) - earned
    previous_digest = previous.digest if previous is not None else ""
    closing = opening + earned + other
    digest = hashlib.sha256(
        statement_canonical(
            user_id=user.pk,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
            opening_minor=opening,
            closing_minor=closing,
            lines=lines,
            previous_digest=previous_digest,
        )
    ).hexdigest()
    statement = Statement.objects.create(
        user=user,
        currency=currency,
        period_start=period_start,
        period_end=period_end,
        opening_minor=opening,
        earned_minor=earned,
        other_minor=other,
        closing_minor=closing,
        previous=previous,
        previous_digest=previous_digest,
        digest=digest,
    )
    StatementLine.objects.bulk_create(
        [
            StatementLine(
                statement=statement,
                work_id=line["work"],
                work_title=str(line["work_title"])[:200],
                source=line["source"],
                kind=line["kind"],
                amount_minor=line["amount_minor"],
            )
            for line in lines
        ]
    )
    return statement


@dataclass(frozen=True)
class StatementCheck:
    digest_matches: bool
    chain_matches: bool
    ledger_matches: bool

    @property
    def valid(self) -> bool:
        return self.digest_matches and self.chain_matches and self.ledger_matches


def _stored_lines(statement: Statement) -> list[dict[str, object]]:
    return [
        {
            "work": line.work_id,
            "work_title": line.work_title,
            "source": line.source,
            "kind": line.kind,
            "amount_minor": line.amount_minor,
        }
        for line in statement.lines.order_by("id")
    ]


def statement_digest(statement: Statement) -> str:
    return hashlib.sha256(
        statement_canonical(
            user_id=statement.user_id,
            currency=statement.currency,
            period_start=statement.period_start,
            period_end=statement.period_end,
            opening_minor=statement.opening_minor,
            closing_minor=statement.closing_minor,
            lines=_stored_lines(statement),
            previous_digest=statement.previous_digest,
        )
    ).hexdigest()


def statement_verify(*, statement: Statement) -> StatementCheck:
    """Is the statement as issued? Its digest over its stored content, its link to the previous
    statement's digest, and its lines and balances against the ledger now."""
    previous_digest = statement.previous.digest if statement.previous is not None else ""
    user = statement.user
    ledger_lines = selectors.statement_lines_from_ledger(
        user=user, currency=statement.currency, start=statement.period_start, end=statement.period_end
    )
    opening = selectors.payable_balance_before(
        user=user, currency=statement.currency, moment=statement.period_start
    )
    stored = _stored_lines(statement)
    comparable = [{**line, "work_title": ""} for line in stored]
    return StatementCheck(
        digest_matches=statement_digest(statement) == statement.digest,
        chain_matches=statement.previous_digest == previous_digest,
        ledger_matches=(
            comparable == [{**line, "work_title": ""} for line in ledger_lines]
            and opening == statement.opening_minor
            and statement.closing_minor == opening + sum(int(str(line["amount_minor"])) for line in stored)
        ),
    )


def statement_csv(*, statement: Statement) -> str:
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer, lineterminator="\n")  # work titles are the owners' free text
    writer.writerow(["statement", statement.pk])
    writer.writerow(["payee", statement.user_id])
    writer.writerow(["currency", statement.currency])
    writer.writerow(["period_start", statement.period_start.astimezone(UTC).isoformat()])
    writer.writerow(["period_end", statement.period_end.astimezone(UTC).isoformat()])
    writer.writerow(["opening_minor", statement.opening_minor])
    writer.writerow(["earned_minor", statement.earned_minor])
    writer.writerow(["other_minor", statement.other_minor])
    writer.writerow(["closing_minor", statement.closing_minor])
    writer.writerow(["previous_digest", statement.previous_digest])
    writer.writerow(["sha256", statement.digest])
    writer.writerow([])
    writer.writerow(["work", "work_title", "source", "kind", "amount_minor", "amount"])
    for line in statement.lines.order_by("id"):
        writer.writerow(
            [
                line.work_id if line.work_id is not None else "",
                line.work_title,
                line.source,
                line.kind,
                line.amount_minor,
                currencies.format_minor(line.amount_minor, statement.currency),
            ]
        )
    return buffer.getvalue()

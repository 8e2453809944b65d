"""Reads the dashboard needs that the catalog's selectors do not offer. Each one keeps the same
visibility rules as the API: what a user may not see answers 404."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import TypedDict

from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Sum, Value
from django.db.models.functions import Least, Substr, TruncDate, TruncWeek
from django.shortcuts import get_object_or_404

from access import selectors as access
from access.models import AccessEvent, Retrieval, RetrievalPassage, SpendCap
from accounts import selectors as accounts
from accounts.models import Organisation, User
from catalog import selectors as catalog
from catalog.models import (
    Asset,
    Claim,
    ClaimStatus,
    Grant,
    GrantStatus,
    OfferUse,
    Output,
    TextVersion,
    UseClass,
    Work,
    WorkParent,
)
from common import clock
from dashboard.plain_words import minor_digits
from matching import selectors as media
from royalties import selectors as royalties
from royalties.models import AccountKind, Entry, LedgerAccount, RevenueItem, RevenueSource, TransactionKind


def asset_get_viewable(*, user: User | None, asset_id: int) -> Asset:
    """An asset's bytes may be shown to the people who can see its work, to anyone when the work is in the
    public catalogue, and to both parties of a claim: the claimed work's owners see the respondent's file,
    the respondent sees the one file of the claimed work that matched, never its other files."""
    assets = Asset.objects.select_related("blob", "work")
    public_work_ids = catalog.offers_public().values("work_id")
    rule = Q(work_id__in=public_work_ids)
    if user is not None and user.is_authenticated:
        claims = catalog.claims_visible_to(user=user)
        rule |= (
            Q(work__in=catalog.works_visible_to(user=user))
            | Q(pk__in=claims.values("subject_asset_id"))
            | Q(pk__in=claims.filter(respondent=user).values("matched_asset_id"))
        )
    return get_object_or_404(assets.filter(rule), pk=asset_id)


def preview_asset_of(*, work: Work, kind: str | None = None) -> Asset | None:
    """The asset that represents a work in lists: its first file (of the given media kind if named)."""
    assets = catalog.assets_of(work=work)
    if kind:
        assets = assets.filter(blob__kind=kind)
    return assets.first()


def derivative_links_of(*, work: Work) -> QuerySet[WorkParent]:
    """The works registered as derived from this one: the owner sees what was made under their terms."""
    return WorkParent.objects.filter(parent=work).select_related("child", "child__created_by", "grant")


def grants_on_work(*, work: Work) -> QuerySet[Grant]:
    return Grant.objects.filter(offer__work=work).select_related("offer", "licensee", "organisation")


def grants_held_by(*, user: User) -> QuerySet[Grant]:
    return (
        Grant.objects.filter(Q(licensee=user) | Q(organisation__membership__user=user))
        .distinct()
        .select_related("offer", "offer__work", "offer__work__created_by")
    )


def grants_on_works_of(*, user: User) -> QuerySet[Grant]:
    return Grant.objects.filter(offer__work__created_by=user).select_related(
        "offer", "offer__work", "licensee", "organisation"
    )


def derivative_grants_of(*, user: User) -> QuerySet[Grant]:
    """Active grants the user holds whose terms allow derivative works: what a derivative may name."""
    allows = OfferUse.objects.filter(offer=OuterRef("offer"), use_class=UseClass.DERIVATIVE)
    return grants_held_by(user=user).filter(Exists(allows), status=GrantStatus.ACTIVE)


def claims_disputed() -> QuerySet[Claim]:
    return Claim.objects.filter(status=ClaimStatus.DISPUTED).select_related(
        "work", "work__created_by", "respondent", "subject_asset"
    )


def claim_open_count(*, user: User) -> int:
    return catalog.claims_visible_to(user=user).filter(work__created_by=user, status=ClaimStatus.OPEN).count()


def weekly_activity(*, user: User, weeks: int = 12) -> dict[str, list[int] | list[str]]:
    """Works registered, files uploaded and licences granted on the user's works, per week (Monday first)."""
    today = clock.now().date()
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    labels = [first + timedelta(weeks=i) for i in range(weeks)]
    works = catalog.works_visible_to(user=user)

    def per_week(queryset: QuerySet, field: str) -> list[int]:
        rows = (
            queryset.filter(**{f"{field}__date__gte": first})
            .annotate(week=TruncWeek(field))
            .values("week")
            .annotate(n=Count("pk", distinct=True))
        )
        counts = {row["week"].date(): row["n"] for row in rows}
        return [counts.get(day, 0) for day in labels]

    return {
        "labels": [day.isoformat() for day in labels],
        "works": per_week(works, "created_at"),
        "assets": per_week(Asset.objects.filter(work__in=works), "created_at"),
        "grants": per_week(Grant.objects.filter(offer__work__created_by=user), "created_at"),
    }


# Money -------------------------------------------------------------------------------------------------


class Series(TypedDict):
    label: str
    data: list[int]


class EarningsChart(TypedDict):
    currency: str
    digits: int
    labels: list[str]
    by_work: list[Series]
    by_source: list[Series]


def earnings_by_day(*, user: User, currency: str) -> EarningsChart:
    """What the ledger credited the user's payable account in `currency`, per day (of the journal
    transaction), split once by work and once by source. Amounts in minor units; days without entries
    are left out."""
    rows = (
        Entry.objects.filter(
            account__user=user, account__kind=AccountKind.PAYABLE, account__currency=currency
        )
        .exclude(transaction__kind=TransactionKind.PAYOUT)  # payouts are on the balance history, not earnings
        .annotate(day=TruncDate("transaction__created_at"))
        .values("day", "work", "work__title", "source")
        .annotate(total=Sum("amount_minor"))
        .order_by("day", "work", "source")
    )
    days: list[date] = []
    works: dict[int | None, str] = {}
    by_work: dict[int | None, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    by_source: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        day = row["day"]
        if not days or days[-1] != day:
            days.append(day)
        works.setdefault(row["work"], row["work__title"] or "Other")
        by_work[row["work"]][day] += row["total"]
        by_source[row["source"]][day] += row["total"]
    labels = dict(RevenueSource.choices)
    return {
        "currency": currency,
        "digits": minor_digits(currency),
        "labels": [day.isoformat() for day in days],
        "by_work": [
            {"label": title, "data": [by_work[work][day] for day in days]} for work, title in works.items()
        ],
        "by_source": [
            {"label": labels.get(source, source or "Other"), "data": [totals[day] for day in days]}
            for source, totals in sorted(by_source.items())
        ],
    }


def organisations_of(*, user: User) -> QuerySet[Organisation]:
    return accounts.organisations_of(user=user).order_by("name", "pk")


class PrepaidRow(TypedDict):
    organisation: Organisation
    currency: str
    available_minor: int


def prepaid_balances_of(*, user: User) -> list[PrepaidRow]:
    """What each of the user's organisations can still spend, per currency it holds a prepaid account in."""
    rows: list[PrepaidRow] = []
    for organisation in organisations_of(user=user):
        currencies = (
            LedgerAccount.objects.filter(organisation=organisation, kind=AccountKind.VENDOR_PREPAID)
            .order_by("currency")
            .values_list("currency", flat=True)
        )
        for currency in currencies:
            rows.append(
                {
                    "organisation": organisation,
                    "currency": currency,
                    "available_minor": royalties.prepaid_available(
                        organisation=organisation, currency=currency
                    ),
                }
            )
    return rows


def spend_caps_of(*, user: User) -> QuerySet[SpendCap]:
    return (
        SpendCap.objects.filter(organisation__in=organisations_of(user=user))
        .select_related("organisation", "api_key")
        .order_by("organisation__name", "api_key_id", "currency", "pk")
    )


def accesses_of_organisations(*, user: User) -> QuerySet[AccessEvent]:
    """The accesses the user's organisations paid for (not the accesses of works the user owns)."""
    return (
        access.accesses_visible_to(user=user)
        .filter(organisation__in=organisations_of(user=user))
        .select_related("work", "organisation")
        .order_by("-created_at", "-id")
    )


def receipt_of(event: AccessEvent) -> str:
    """The signed receipt (JWS) the access was answered with."""
    body = json.loads(bytes(event.response_body))
    return str(body.get("receipt", ""))


class UsageChart(TypedDict):
    labels: list[str]
    accesses: list[int]
    spend: dict[str, list[int]]
    digits: dict[str, int]


class UsageRow(TypedDict):
    work: int
    work_title: str
    use_class: str
    currency: str
    accesses: int
    spend_minor: int


def usage_of(*, user: User, since: date) -> tuple[UsageChart, list[UsageRow]]:
    """Accesses and spend per day (oldest first, for the chart) and per work and use (most spent first)."""
    rows = access.usage(user=user, since=since)
    days = sorted({row["day"] for row in rows})
    accesses: dict[date, int] = defaultdict(int)
    spend: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[tuple[int, str, str], UsageRow] = {}
    for row in rows:
        accesses[row["day"]] += row["accesses"]
        spend[row["currency"]][row["day"]] += row["spend_minor"] or 0
        key = (row["work"], row["use_class"], row["currency"])
        total = totals.setdefault(
            key,
            {
                "work": row["work"],
                "work_title": row["work__title"],
                "use_class": row["use_class"],
                "currency": row["currency"],
                "accesses": 0,
                "spend_minor": 0,
            },
        )
        total["accesses"] += row["accesses"]
        total["spend_minor"] += row["spend_minor"] or 0
    chart: UsageChart = {
        "labels": [day.isoformat() for day in days],
        "accesses": [accesses[day] for day in days],
        "spend": {currency: [per_day[day] for day in days] for currency, per_day in sorted(spend.items())},
        "digits": {currency: minor_digits(currency) for currency in spend},
    }
    table = sorted(
        totals.values(), key=lambda r: (-r["spend_minor"], -r["accesses"], r["work"], r["use_class"])
    )
    return chart, table


def outputs_of(*, user: User) -> QuerySet[Output]:
    """The outputs the user's organisations registered, with the claims they opened that the user may see."""
    return (
        Output.objects.filter(organisation__in=organisations_of(user=user))
        .select_related("organisation", "registered_by")
        .prefetch_related(
            Prefetch(
                "claims",
                queryset=catalog.claims_visible_to(user=user).order_by("pk"),
                to_attr="visible_claims",
            )
        )
        .order_by("-created_at", "-id")
    )


def work_titles(work_ids: set[int]) -> dict[int, str]:
    """Titles for the work ids an output's result names (works it matched or claimed a receipt for)."""
    return dict(Work.objects.filter(pk__in=work_ids).values_list("pk", "title"))


# Text works ---------------------------------------------------------------------------------------------

# The newest text shown on a text work's page, and the excerpt of each retrieved passage in lists.
TEXT_PREVIEW_CHARACTERS = 3000
PASSAGE_EXCERPT_CHARACTERS = 300


class TextVersionRow(TypedDict):
    version: TextVersion
    tokens: int | None  # None until the text is fingerprinted (its passages are cut and counted then)


class TextSummary(TypedDict):
    versions: list[TextVersionRow]
    preview: str
    preview_cut: bool


def text_summary_of(*, work: Work) -> TextSummary:
    """A text work's versions (newest first, with their token counts) and the start of its newest text."""
    versions = list(catalog.text_versions_of(work=work))
    tokens = media.text_token_counts(sha256s=[version.asset.blob_id for version in versions])
    preview = ""
    if versions:
        preview = catalog.text_excerpt(text_version_id=versions[0].pk, start=0, end=TEXT_PREVIEW_CHARACTERS)
    return {
        "versions": [{"version": v, "tokens": tokens.get(v.asset.blob_id)} for v in versions],
        "preview": preview,
        "preview_cut": bool(versions) and versions[0].characters > TEXT_PREVIEW_CHARACTERS,
    }


def _with_excerpts(passages: QuerySet[RetrievalPassage]) -> QuerySet[RetrievalPassage]:
    """The passages with the start of their text (read by the database: a passage sold for training is a
    whole book) and the buyer's organisation."""
    return (
        passages.select_related("retrieval__organisation")
        .defer("text_version__text", "retrieval__response_body")
        .annotate(
            excerpt=Substr(
                "text_version__text",
                F("start") + 1,
                Least(F("end") - F("start"), Value(PASSAGE_EXCERPT_CHARACTERS)),
            )
        )
    )


def passages_sold_of_works(*, user: User, work_id: int | None = None) -> QuerySet[RetrievalPassage]:
    """Passages of the works the user manages or co-owns that vendors bought, newest first."""
    sold = access.retrieved_passages_visible_to(user=user).filter(
        work__in=catalog.works_visible_to(user=user)
    )
    if work_id is not None:
        sold = sold.filter(work_id=work_id)
    return _with_excerpts(sold)


class RetrievalGroup(TypedDict):
    retrieval: Retrieval
    passages: list[RetrievalPassage]


def retrievals_bought_by(*, user: User, retrievals: list[Retrieval]) -> list[RetrievalGroup]:
    """The given retrievals of the user's organisations, each with the passages it bought."""
    passages = _with_excerpts(
        access.retrieved_passages_visible_to(user=user).filter(
            retrieval__in=[retrieval.pk for retrieval in retrievals],
            retrieval__organisation__in=accounts.organisations_of(user=user),
        )
    )
    by_retrieval: dict[int, list[RetrievalPassage]] = defaultdict(list)
    for passage in passages:
        by_retrieval[passage.retrieval_id].append(passage)
    return [{"retrieval": retrieval, "passages": by_retrieval[retrieval.pk]} for retrieval in retrievals]


# A vendor's console: spend per key and the balance history -----------------------------------------------


class KeyUsageRow(TypedDict):
    api_key: int | None
    name: str
    prefix: str
    currency: str
    accesses: int
    spend_minor: int


def usage_by_key_of(*, user: User, since: date) -> list[KeyUsageRow]:
    """Accesses and spend per API key of the user's organisations since `since` (most spent first); paid
    with no key (x402 without an account key) is its own row."""
    rows = (
        AccessEvent.objects.filter(organisation__in=organisations_of(user=user), created_at__date__gte=since)
        .values("api_key", "api_key__name", "api_key__prefix", "currency")
        .annotate(accesses=Count("id"), spend_minor=Sum("price_minor"))
        .order_by("-spend_minor", "api_key")
    )
    return [
        {
            "api_key": row["api_key"],
            "name": row["api_key__name"] or "",
            "prefix": row["api_key__prefix"] or "",
            "currency": row["currency"],
            "accesses": row["accesses"],
            "spend_minor": row["spend_minor"] or 0,
        }
        for row in rows
    ]


class VendorMovement(TypedDict):
    at: datetime
    kind: str  # top_up | access | licence_fee | dataset | claim | sale | refund | adjustment | ...
    label: str
    work_title: str
    count: int
    amount_minor: int
    balance_after_minor: int


class VendorHistory(TypedDict):
    organisation: Organisation | None  # never None: prepaid accounts belong to organisations
    currency: str
    movements: list[VendorMovement]


_VENDOR_LEDGER_LABELS: dict[str, tuple[str, str]] = {
    TransactionKind.FUNDING: ("top_up", "Top-up"),
    TransactionKind.REFUND: ("refund", "Refund or chargeback"),
    TransactionKind.REVERSAL: ("adjustment", "Reversal"),
    TransactionKind.ADJUSTMENT: ("adjustment", "Adjustment"),
    TransactionKind.CLAIM: ("claim", "Claim charge"),
    TransactionKind.PAYOUT: ("adjustment", "Adjustment"),
}


def vendor_history_of(*, user: User) -> list[VendorHistory]:
    """Every movement of each prepaid balance of the user's organisations, newest first, with the balance
    after it (what could be spent: funding less everything bought, settled or not). Money in comes from
    the ledger (top-ups, refunds); money out is what was bought, when it was bought (each revenue item the
    balance pays: per-access charges summed per day and work, licence fees, dataset purchases, claims),
    so a purchase shows at once, before settlement moves it in the ledger."""
    histories: list[VendorHistory] = []
    accounts_ = LedgerAccount.objects.filter(
        organisation__in=organisations_of(user=user), kind=AccountKind.VENDOR_PREPAID
    ).select_related("organisation")
    sources = dict(RevenueSource.choices)
    for account in accounts_.order_by("organisation__name", "currency"):
        # (moment, tie-break, movement): at the same moment money in comes first, then purchases in order.
        steps: list[tuple[datetime, tuple[int, int], VendorMovement]] = []
        entries = (
            Entry.objects.filter(account=account)
            .exclude(transaction__kind=TransactionKind.SETTLEMENT)  # counted below, when bought
            .values("transaction__kind", "transaction__created_at", "amount_minor", "id")
        )
        for row in entries:
            kind, label = _VENDOR_LEDGER_LABELS.get(row["transaction__kind"], ("adjustment", "Adjustment"))
            steps.append(
                (
                    row["transaction__created_at"],
                    (0, row["id"]),
                    {
                        "at": row["transaction__created_at"],
                        "kind": kind,
                        "label": label,
                        "work_title": "",
                        "count": 1,
                        "amount_minor": row["amount_minor"],
                        "balance_after_minor": 0,
                    },
                )
            )
        items = (
            RevenueItem.objects.filter(payer=account)
            .values("source", "arose_at", "amount_minor", "work__title", "id")
            .order_by("arose_at", "id")
        )
        per_day: dict[tuple[date, str], int] = {}  # -> index in steps
        for item in items:
            if item["source"] == RevenueSource.ACCESS:
                key = (item["arose_at"].date(), item["work__title"])
                index = per_day.get(key)
                if index is not None:
                    grouped = steps[index][2]
                    grouped["count"] += 1
                    grouped["amount_minor"] -= item["amount_minor"]
                    grouped["at"] = item["arose_at"]
                    steps[index] = (item["arose_at"], (1, item["id"]), grouped)
                    continue
            movement: VendorMovement = {
                "at": item["arose_at"],
                "kind": item["source"],
                "label": "Per-access charges"
                if item["source"] == RevenueSource.ACCESS
                else sources.get(item["source"], item["source"]),
                "work_title": item["work__title"] or "",
                "count": 1,
                "amount_minor": -item["amount_minor"],
                "balance_after_minor": 0,
            }
            if item["source"] == RevenueSource.ACCESS:
                per_day[(item["arose_at"].date(), item["work__title"])] = len(steps)
            steps.append((item["arose_at"], (1, item["id"]), movement))
        steps.sort(key=lambda step: (step[0], step[1]))
        balance = 0
        for _, _, movement in steps:
            balance += movement["amount_minor"]
            movement["balance_after_minor"] = balance
        histories.append(
            {
                "organisation": account.organisation,
                "currency": account.currency,
                "movements": [movement for _, _, movement in reversed(steps)],
            }
        )
    return histories

"""Money pages: a creator's earnings and statements, a vendor's balance, usage, receipts and outputs."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from access import payments
from access import services as access_services
from accounts import selectors as account_selectors
from accounts.models import Role
from common import clock
from common.currency import format_minor
from common.problems import ApiError
from contracts.chain import ChainError, TokenDomain
from dashboard import forms
from dashboard import selectors as dashboard
from dashboard.web import current_user, paginate, role_only
from royalties import payouts
from royalties import selectors as royalty_selectors
from royalties import statements as royalty_statements
from royalties.models import RevenueSource
from royalties.rails import stripe as stripe_gateway

# Money: earnings and statements ------------------------------------------------------------------------

HISTORY_PAGE_SIZE = 20


@login_required
@require_GET
def earnings(request: HttpRequest) -> HttpResponse:
    """Any payee's earnings (creators and fans earn; a vendor sees an empty page), only ever their own."""
    user = current_user(request)
    summary = royalty_selectors.earnings_of(user=user)
    currencies = [row["currency"] for row in summary["balances"]]
    chosen = request.GET.get("currency", "")
    currency = chosen if chosen in currencies else (currencies[0] if currencies else "")
    statements = paginate(
        request, royalty_selectors.statements_of(user=user).select_related("user", "previous")
    )
    balances = royalty_selectors.payee_balances_of(user=user)
    return render(
        request,
        "dashboard/earnings.html",
        {
            "balances": summary["balances"],
            "where": [
                {**row, "threshold_minor": payouts.threshold_minor(row["currency"])}
                for row in balances
                if row["currency"] == currency
            ],
            "history": paginate(
                request,
                royalty_selectors.payee_history_of(user=user, currency=currency) if currency else [],
                size=HISTORY_PAGE_SIZE,
                param="history_page",
            ),
            "period": payouts.period_of(clock.now()),
            "by_work": paginate(request, summary["by_work"], param="work_page"),
            "currencies": currencies,
            "currency": currency,
            "chart": dashboard.earnings_by_day(user=user, currency=currency) if currency else None,
            "statements": statements,
            "checks": {
                statement.pk: royalty_statements.statement_verify(statement=statement)
                for statement in statements
            },
            "sources": dict(RevenueSource.choices),
        },
    )


@login_required
@require_POST
def statement_new(request: HttpRequest) -> HttpResponse:
    """The user's next statement in one of the currencies they hold a payable balance in, up to now."""
    user = current_user(request)
    currencies = [row["currency"] for row in royalty_selectors.earnings_of(user=user)["balances"]]
    currency = request.POST.get("currency", "")
    if currency not in currencies:
        messages.error(request, "Choose a currency you have earned in.")
        return redirect("dashboard:earnings")
    try:
        statement = royalty_statements.statement_generate(
            user=user, currency=currency, period_end=clock.now()
        )
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Statement #{statement.pk} ({statement.currency}) is issued.")
    return redirect(reverse("dashboard:earnings") + "#statements")


@login_required
@require_GET
def statement_csv(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = royalty_selectors.statement_get_visible(user=current_user(request), statement_id=statement_id)
    response = HttpResponse(royalty_statements.statement_csv(statement=statement), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="statement-{statement.pk}.csv"'
    return response


# Money: what a vendor spends ---------------------------------------------------------------------------

USAGE_DAYS = 90
OUTPUT_RESULT_PARTS = ("confirmed_works", "unconfirmed_works", "uncovered_works")


def _token_domain() -> TokenDomain | None:
    try:
        return payments.chain().token_domain()
    except ChainError:
        return None


HISTORY_ROWS = 100


def _balance_page(
    request: HttpRequest, cap_form: forms.SpendCapForm | None = None, status: int = 200
) -> HttpResponse:
    user = current_user(request)
    histories = dashboard.vendor_history_of(user=user)
    return render(
        request,
        "dashboard/balance.html",
        {
            "balances": dashboard.prepaid_balances_of(user=user),
            "organisations": dashboard.organisations_of(user=user),
            "caps": paginate(request, dashboard.spend_caps_of(user=user)),
            "cap_form": cap_form or forms.SpendCapForm(user=user),
            "month": clock.now().strftime("%Y-%m"),
            "token": _token_domain(),
            "stripe_on": stripe_gateway.is_configured(),
            "histories": [
                {
                    **history,
                    "page": paginate(request, history["movements"], size=HISTORY_ROWS, param="history"),
                }
                for history in histories
            ],
        },
        status=status,
    )


@login_required
@require_GET
def balance(request: HttpRequest) -> HttpResponse:
    refused = role_only(request, Role.VENDOR, "The prepaid balance")
    if refused:
        return refused
    return _balance_page(request)


@login_required
@require_POST
def spend_cap_set(request: HttpRequest) -> HttpResponse:
    """A vendor sets (or, with an empty amount, removes) a monthly spend cap for the whole organisation
    or for one of its keys; the access path enforces it (403 spend_cap_reached)."""
    refused = role_only(request, Role.VENDOR, "Spend caps")
    if refused:
        return refused
    user = current_user(request)
    form = forms.SpendCapForm(request.POST, user=user)
    if form.is_valid():
        data = form.cleaned_data
        try:
            cap = access_services.spend_cap_set(
                organisation=data["organisation"],
                api_key=data["api_key"],
                currency_code=data["currency"],
                cap_minor=data["cap_minor"],
            )
        except ApiError as exc:
            forms.attach_problem(form, exc, {"cap_below_spent": "amount", "amount_out_of_range": "amount"})
        else:
            scope = f"key “{data['api_key'].name}”" if data["api_key"] else data["organisation"].name
            if cap is None:
                messages.success(request, f"The monthly cap of {scope} ({data['currency']}) is removed.")
            else:
                amount = format_minor(cap.cap_minor, cap.currency)
                messages.success(request, f"{scope} may spend at most {amount} a month.")
            return redirect(reverse("dashboard:balance") + "#spend-caps")
    return _balance_page(request, cap_form=form, status=400)


USAGE_WINDOWS = (7, 30, 90)


@login_required
@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    refused = role_only(request, Role.VENDOR, "Usage and spend")
    if refused:
        return refused
    user = current_user(request)
    chosen = request.GET.get("days", "")
    days = int(chosen) if chosen in {str(window) for window in USAGE_WINDOWS} else USAGE_DAYS
    since = timezone.localdate() - timedelta(days=days - 1)
    chart, table = dashboard.usage_of(user=user, since=since)
    by_key = dashboard.usage_by_key_of(user=user, since=since)
    totals: dict[str, int] = {}
    for row in table:
        totals[row["currency"]] = totals.get(row["currency"], 0) + row["spend_minor"]
    return render(
        request,
        "dashboard/usage.html",
        {
            "chart": chart,
            "page": paginate(request, table),
            "since": since,
            "days": days,
            "windows": USAGE_WINDOWS,
            "by_key": by_key,
            "totals": sorted(totals.items()),
        },
    )


@login_required
@require_GET
def quickstart(request: HttpRequest) -> HttpResponse:
    """The first calls an AI vendor makes, with this site's address and the user's own first key prefix."""
    user = current_user(request)
    return render(
        request,
        "dashboard/quickstart.html",
        {
            "site": settings.SITE_URL,
            "has_key": account_selectors.api_keys_visible_to(user=user)
            .filter(revoked_at__isnull=True)
            .exists(),
            "funded": any(row["available_minor"] for row in dashboard.prepaid_balances_of(user=user)),
        },
    )


@login_required
@require_GET
def receipts(request: HttpRequest) -> HttpResponse:
    refused = role_only(request, Role.VENDOR, "The receipts list")
    if refused:
        return refused
    page = paginate(request, dashboard.accesses_of_organisations(user=current_user(request)))
    rows = [(event, dashboard.receipt_of(event)) for event in page]
    return render(request, "dashboard/receipts.html", {"page": page, "rows": rows})


@login_required
@require_GET
def outputs(request: HttpRequest) -> HttpResponse:
    refused = role_only(request, Role.VENDOR, "The registered outputs list")
    if refused:
        return refused
    page = paginate(request, dashboard.outputs_of(user=current_user(request)))
    named: set[int] = set()
    for output in page:
        for part in OUTPUT_RESULT_PARTS:
            named.update(int(work_id) for work_id in output.result.get(part, []))
    titles = dashboard.work_titles(named)

    def works(ids: list[int]) -> list[tuple[int, str]]:
        return [(int(work_id), titles.get(int(work_id), "")) for work_id in ids]

    rows = [
        {
            "output": output,
            "confirmed": works(output.result.get("confirmed_works", [])),
            "unconfirmed": works(output.result.get("unconfirmed_works", [])),
            "uncovered": works(output.result.get("uncovered_works", [])),
            "claims": output.visible_claims,
        }
        for output in page
    ]
    return render(request, "dashboard/outputs.html", {"page": page, "rows": rows})

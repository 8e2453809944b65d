"""Payout pages: the payee's payouts and their state; for staff, the manual payouts waiting (CSV export,
mark paid or failed) and the reconciliation differences."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import PayoutProfile
from common import clock
from common.problems import ApiError
from dashboard.web import current_user, paginate, staff_required
from royalties import payouts, reconcile
from royalties import selectors as royalty_selectors
from royalties.models import PayoutRail, ReconciliationRun


@login_required
@require_GET
def payouts_page(request: HttpRequest) -> HttpResponse:
    """Your payouts, newest first, with what is payable now and the threshold a payout needs."""
    user = current_user(request)
    profile = PayoutProfile.objects.filter(user=user).first()
    balances = [
        {
            **row,
            "threshold_minor": payouts.threshold_minor(row["currency"]),
            "rail": payouts.rail_for(profile, row["currency"])[0],
        }
        for row in royalty_selectors.earnings_of(user=user)["balances"]
    ]
    return render(
        request,
        "dashboard/payouts/payouts.html",
        {
            "page": paginate(request, payouts.payouts_of(user=user)),
            "balances": balances,
            "profile": profile,
            "period": payouts.period_of(clock.now()),
        },
    )


@staff_required
@require_http_methods(["GET", "POST"])
def staff_payouts(request: HttpRequest) -> HttpResponse:
    """Manual payouts waiting, oldest first: export them as CSV, pay them by hand, then mark each paid
    (with the bank's reference) or failed (the money goes back to the payee's payable)."""
    if request.method == "POST":
        payout = get_object_or_404(payouts.manual_waiting(), pk=request.POST.get("payout"))
        try:
            if request.POST.get("action") == "paid":
                payouts.manual_mark_paid(payout=payout, reference=request.POST.get("reference", ""))
                messages.success(request, f"Payout {payout.key} is marked paid.")
            elif request.POST.get("action") == "failed":
                payouts.manual_mark_failed(payout=payout, reason=request.POST.get("reason", ""))
                messages.success(
                    request, f"Payout {payout.key} failed; the money is payable to the payee again."
                )
            else:
                messages.error(request, "Choose paid or failed.")
        except ApiError as error:
            messages.error(request, str(error.detail))
        return redirect("dashboard:staff-payouts")
    recent = payouts.payouts_all().exclude(rail=PayoutRail.MANUAL, status="created")
    return render(
        request,
        "dashboard/payouts/staff_payouts.html",
        {
            "page": paginate(request, payouts.manual_waiting()),
            "recent": paginate(request, recent, param="recent_page"),
        },
    )


@staff_required
@require_GET
def staff_payouts_csv(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(payouts.payouts_csv(payouts.manual_waiting()), content_type="text/csv")
    stamp = clock.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="manual-payouts-{stamp}.csv"'
    return response


@staff_required
@require_http_methods(["GET", "POST"])
def staff_reconciliation(request: HttpRequest) -> HttpResponse:
    """Differences between our ledger and the rails that nobody has explained yet; run a reconciliation
    of a period, or resolve a difference with a note."""
    if request.method == "POST":
        if request.POST.get("action") == "run":
            period = request.POST.get("period", "").strip() or payouts.period_of(clock.now())
            try:
                period = payouts.period_check(period, any_kind=True)
            except ApiError as refused:
                messages.error(request, str(refused.detail))
                return redirect("dashboard:staff-reconciliation")
            runs = reconcile.reconcile_all(period=period)
            found = sum(run.differences_found for run in runs)
            errors = [f"{run.rail}: {run.error}" for run in runs if run.error]
            messages.success(request, f"Reconciled {len(runs)} rail(s) for {period}: {found} difference(s).")
            for error in errors:
                messages.error(request, error)
        else:
            difference = get_object_or_404(reconcile.differences_open(), pk=request.POST.get("difference"))
            reconcile.difference_resolve(
                difference=difference, user=current_user(request), note=request.POST.get("note", "")
            )
            messages.success(request, f"Difference #{difference.pk} is resolved.")
        return redirect("dashboard:staff-reconciliation")
    return render(
        request,
        "dashboard/payouts/staff_reconciliation.html",
        {
            "page": paginate(request, reconcile.differences_open().order_by("-created_at", "-id")),
            "runs": ReconciliationRun.objects.order_by("-started_at", "-id")[:10],
            "period": payouts.period_of(clock.now()),
        },
    )


@staff_required
@require_POST
def staff_payout_run(request: HttpRequest) -> HttpResponse:
    """Run the payout job now (it also runs on its schedule)."""
    result = payouts.payout_run()
    messages.success(
        request,
        f"Payout run for {result.period}: {len(result.created)} made, {result.submitted} submitted, "
        f"{result.confirmed} confirmed, {result.manual} manual.",
    )
    return redirect("dashboard:staff-payouts")

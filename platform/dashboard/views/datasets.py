"""Dashboard pages for datasets: creators contribute, opt out and see earnings; curators cut snapshots;
vendors browse, buy and download. Thin: selectors to read, datasets.services to write, and a service's
refusal shown as a message on the page it concerns."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role
from catalog.models import Work
from common.problems import ApiError
from dashboard.web import current_user
from datasets import apis as dataset_apis
from datasets import delivery, selectors
from datasets.models import DatasetKind, ItemStatus, Pricing, Weighting
from datasets.services import contributing, curation, opt_outs, sales, snapshots
from royalties.ledger import InsufficientFunds
from royalties.selectors import prepaid_available

PAGE_SIZE = 20


def _not_for(request: HttpRequest, *roles: str) -> HttpResponse | None:
    if current_user(request).role in roles:
        return None
    labels = " or ".join(str(Role(role).label) for role in roles)
    return render(request, "dashboard/not_for_role.html", {"what": "This page", "role": labels}, status=403)


@login_required
@require_GET
def datasets(request: HttpRequest) -> HttpResponse:
    refused = _not_for(request, Role.CREATOR, Role.VENDOR)
    if refused:
        return refused
    user = current_user(request)
    listed = selectors.datasets_visible_to(user=user).order_by("-created_at")
    context: dict[str, Any] = {"page": Paginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))}
    if user.role == Role.CREATOR:
        context["contributions"] = selectors.contributions_of(user=user)
        context["curator_earnings"] = selectors.curator_earnings(user=user)
        context["notices"] = selectors.notices_of(user=user)[:10]
        context["do_not_train"] = selectors.opt_outs_of(user=user).filter(work__isnull=True).exists()
    else:
        context["licences"] = selectors.licences_visible_to(user=user)[:10]
    return render(request, "dashboard/datasets/list.html", context)


class DatasetForm(forms.Form):
    title = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=DatasetKind.choices)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    price_minor = forms.IntegerField(min_value=0, label="Price (minor units, e.g. cents)")
    currency = forms.CharField(max_length=3, initial="USD")
    pricing = forms.ChoiceField(choices=Pricing.choices)
    weighting = forms.ChoiceField(choices=Weighting.choices)
    curator_share_bps = forms.IntegerField(min_value=0, max_value=9_999, initial=0, label="Your share (bps)")
    commercial_use = forms.BooleanField(required=False)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_new(request: HttpRequest) -> HttpResponseBase:
    refused = _not_for(request, Role.CREATOR)
    if refused:
        return refused
    form = DatasetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            dataset = curation.dataset_create(
                user=current_user(request),
                title=data["title"],
                kind=data["kind"],
                description=data["description"],
                offering=curation.Offering(
                    currency=data["currency"].upper(),
                    price_minor=data["price_minor"],
                    pricing=data["pricing"],
                    weighting=data["weighting"],
                    curator_share_bps=data["curator_share_bps"],
                    commercial_use=data["commercial_use"],
                ),
            )
        except ApiError as exc:
            form.add_error(None, str(exc.detail))
        else:
            messages.success(request, f"Dataset “{dataset.title}” created: creators can now contribute.")
            return redirect("dashboard:dataset", dataset.pk)
    return render(request, "dashboard/datasets/new.html", {"form": form})


@login_required
@require_GET
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    refused = _not_for(request, Role.CREATOR, Role.VENDOR)
    if refused:
        return refused
    user = current_user(request)
    dataset = selectors.dataset_get_visible(user=user, dataset_id=dataset_id)
    snapshots = list(selectors.snapshots_of(dataset=dataset).order_by("-number")[:10])
    latest = snapshots[0] if snapshots else None
    context: dict[str, Any] = {
        "dataset": dataset,
        "curates": curation.can_curate(user, dataset),
        "snapshots": snapshots,
        "latest": latest,
        "latest_problem": sales.snapshot_sale_problem(latest) if latest else None,
        "items": Paginator(selectors.items_visible_to(user=user, dataset=dataset), PAGE_SIZE).get_page(
            request.GET.get("page")
        ),
    }
    if user.role == Role.CREATOR:
        context["my_items"] = selectors.items_visible_to(user=user, dataset=dataset).filter(contributor=user)
        context["contributable"] = selectors.works_contributable_by(user=user, dataset=dataset)
    else:
        organisation = selectors.organisations_of(user=user).first()
        context["organisation"] = organisation
        if organisation is not None and latest is not None:
            context["held"] = selectors.licence_of(organisation=organisation, snapshot=latest)
            context["balance"] = prepaid_available(organisation=organisation, currency=latest.currency)
    return render(request, "dashboard/datasets/detail.html", context)


def _back(dataset_id: int) -> HttpResponseBase:
    return redirect("dashboard:dataset", dataset_id)


@login_required
@require_POST
def dataset_contribute(request: HttpRequest, dataset_id: int) -> HttpResponseBase:
    user = current_user(request)
    dataset = selectors.dataset_get_visible(user=user, dataset_id=dataset_id)
    work = Work.objects.filter(pk=request.POST.get("work") or 0, created_by=user).first()
    if work is None:
        messages.error(request, "Choose one of your works.")
        return _back(dataset.pk)
    try:
        items = contributing.item_contribute(dataset=dataset, user=user, work=work)
    except ApiError as exc:
        messages.error(request, f"“{work.title}” cannot join: {exc.detail}")
        return _back(dataset.pk)
    kept = sum(1 for item in items if item.status == ItemStatus.INCLUDED)
    left = [item for item in items if item.status != ItemStatus.INCLUDED]
    messages.success(request, f"“{work.title}”: {kept} file(s) included.")
    for item in left:
        messages.warning(request, f"Left out: {item.reason}")
    return _back(dataset.pk)


@login_required
@require_POST
def item_opt_out(request: HttpRequest, item_id: int) -> HttpResponseBase:
    user = current_user(request)
    item = selectors.item_get_own(user=user, item_id=item_id)
    opt_outs.item_opt_out(item=item, user=user)
    messages.success(request, f"“{item.work.title}” is out of future snapshots of this dataset.")
    return _back(item.dataset_id)


@login_required
@require_POST
def do_not_train(request: HttpRequest) -> HttpResponseBase:
    refused = _not_for(request, Role.CREATOR)
    if refused:
        return refused
    user = current_user(request)
    if request.POST.get("set") == "1":
        opt_outs.training_opt_out_set(user=user)
        messages.success(request, "Do-not-train is on: your works left every dataset and cannot join one.")
    else:
        opt_outs.training_opt_out_clear(user=user)
        messages.success(request, "Do-not-train is off: you may contribute works again.")
    return redirect("dashboard:datasets")


@login_required
@require_POST
def snapshot_new(request: HttpRequest, dataset_id: int) -> HttpResponseBase:
    user = current_user(request)
    dataset = selectors.dataset_get_visible(user=user, dataset_id=dataset_id)
    if not curation.can_curate(user, dataset):
        raise Http404
    try:
        snapshot = snapshots.snapshot_create(dataset=dataset, user=user)
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Snapshot {snapshot.number} cut with {snapshot.item_count} items.")
    return _back(dataset.pk)


@login_required
@require_POST
def snapshot_buy(request: HttpRequest, snapshot_id: int) -> HttpResponseBase:
    refused = _not_for(request, Role.VENDOR)
    if refused:
        return refused
    user = current_user(request)
    snapshot = selectors.snapshot_get_visible(user=user, snapshot_id=snapshot_id)
    organisation = selectors.organisations_of(user=user).first()
    if organisation is None:
        raise Http404
    try:
        purchase = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=user)
    except InsufficientFunds:
        messages.error(request, "Your prepaid balance is not enough for this licence; top it up first.")
        return redirect("dashboard:balance")
    except ApiError as exc:
        messages.error(request, str(exc.detail))
        return _back(snapshot.dataset_id)
    if purchase.created:
        messages.success(request, "Licensed. Your signed receipt and download links are below.")
    return redirect("dashboard:dataset-licence", purchase.licence.pk)


@login_required
@require_GET
def licence_detail(request: HttpRequest, licence_id: int) -> HttpResponse:
    user = current_user(request)
    licence = selectors.licence_get_visible(user=user, licence_id=licence_id)
    links = [
        (link.part, reverse("dashboard:dataset-download", args=[link.token]))
        for link in delivery.links_for(licence=licence)
    ]
    return render(
        request,
        "dashboard/datasets/licence.html",
        {"licence": licence, "links": links, "ttl_s": delivery.link_ttl_s()},
    )


@login_required
@require_GET
def download(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        return dataset_apis.download_response(token=token, user=current_user(request), api_key=None)
    except ApiError as exc:
        return render(
            request, "dashboard/datasets/link_refused.html", {"detail": exc.detail}, status=exc.status_code
        )

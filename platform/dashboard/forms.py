"""The dashboard's forms. They check what a person typed and turn it into the values the services take;
the services still decide (and their errors are shown on the form, next to the field they concern)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone

from accounts import selectors as account_selectors
from accounts.models import Scope
from catalog.models import ClaimDecision, ClaimResolution, Grant, UseClass, WorkKind
from catalog.services import OwnerDetails, Terms, terms_conflicts
from common import clock, currency
from common.problems import ApiError
from dashboard.plain_words import percent

_COUNTRY = re.compile(r"^[A-Z]{2}$")
BPS_PER_PERCENT = 100


def attach_problem(form: forms.BaseForm, exc: ApiError, fields: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: next to the field it concerns when we know it."""
    field = (fields or {}).get(exc.problem_code)
    form.add_error(field if field in form.fields else None, str(exc.detail))


def _tags(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def to_minor(value: Decimal, currency_code: str, field: str) -> int:
    digits = currency.MINOR_DIGITS.get(currency_code, 2)
    scaled = value * (10**digits)
    if scaled != scaled.to_integral_value():
        raise forms.ValidationError(
            {field: f"{currency_code} amounts have at most {digits} decimal places."}, code="precision"
        )
    return int(scaled)


class WorkForm(forms.Form):
    title = forms.CharField(max_length=200, help_text="What people will see in the catalogue.")
    kind = forms.ChoiceField(
        choices=WorkKind.choices,
        help_text=(
            "Images, audio, articles, lyrics and books are single works (a text work takes text, Markdown, "
            "HTML or PDF files); a style, a voice or a text collection collects several."
        ),
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    tags = forms.CharField(required=False, help_text="Comma separated, e.g. watercolour, harbour.")

    def clean_tags(self) -> list[str]:
        tags = _tags(self.cleaned_data["tags"])
        if len(tags) > 30 or any(len(tag) > 40 for tag in tags):
            raise forms.ValidationError("At most 30 tags of at most 40 characters each.")
        return tags


class GrantChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Grant) -> str:
        work = obj.offer.work
        return (
            f"{work.title} by {work.created_by.public_name} "
            f"(their share: {percent(obj.offer.derivative_share_bps)})"
        )


class DerivativeForm(WorkForm):
    grants = GrantChoiceField(
        queryset=Grant.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        label="Made from",
        help_text="The works your derivative uses, each through a licence you hold that allows derivatives.",
        error_messages={"required": "Name at least one parent work: tick the licence you made it under."},
    )

    def __init__(self, *args: Any, grants: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["grants"]
        assert isinstance(field, GrantChoiceField)
        field.queryset = grants


class UploadForm(forms.Form):
    file = forms.FileField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = int(settings.UPLOAD_MAX_BYTES)
        self.fields["file"].help_text = (
            "An image (PNG, JPEG, WebP, GIF, AVIF, HEIC, BMP, TIFF) or audio "
            f"(WAV, FLAC, MP3, OGG/Opus, AIFF, AAC/M4A, WebM). Files up to {_mebibytes(limit)}."
        )
        self.fields["file"].widget.attrs.update(
            {"data-max-bytes": str(limit), "data-max-text": _mebibytes(limit)}
        )


# What a text work's upload picker offers; the service still decides by the content, never by the name.
TEXT_ACCEPT = ".txt,.text,.md,.markdown,.html,.htm,.pdf,text/plain,text/markdown,text/html,application/pdf"


def text_upload_limit_bytes() -> int:
    return min(int(settings.UPLOAD_MAX_BYTES), int(settings.TEXT_UPLOAD_MAX_BYTES))


def _mebibytes(size_bytes: int) -> str:
    mib = size_bytes / (1024 * 1024)
    return f"{mib:,.0f} MB" if mib == int(mib) else f"{mib:,.1f} MB"


class TextUploadForm(forms.Form):
    """A new version of a text work: the file's text becomes the work's newest version."""

    file = forms.FileField(
        label="Upload a new version",
        widget=forms.ClearableFileInput(attrs={"accept": TEXT_ACCEPT}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            "Plain text, Markdown, HTML or PDF (with a text layer), up to "
            f"{_mebibytes(text_upload_limit_bytes())}. Archives, Office files, images, scripts in HTML "
            "and encrypted PDFs are refused."
        )
        limit = text_upload_limit_bytes()
        self.fields["file"].widget.attrs.update(
            {"data-max-bytes": str(limit), "data-max-text": _mebibytes(limit)}
        )


class WorkEditForm(forms.Form):
    title = forms.CharField(max_length=200, help_text="What people will see in the catalogue.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    tags = forms.CharField(required=False, help_text="Comma separated, e.g. watercolour, harbour.")

    def clean_tags(self) -> list[str]:
        tags = _tags(self.cleaned_data["tags"])
        if len(tags) > 30 or any(len(tag) > 40 for tag in tags):
            raise forms.ValidationError("At most 30 tags of at most 40 characters each.")
        return tags


class SplitShareForm(forms.Form):
    name = forms.CharField(required=False, max_length=120, label="Name")
    role = forms.CharField(
        required=False, max_length=60, label="Role", widget=forms.TextInput(attrs={"list": "split-roles"})
    )
    email = forms.EmailField(required=False, label="Co-owner's email")
    percent = forms.DecimalField(
        required=False,
        min_value=Decimal("0.01"),
        max_value=Decimal("100"),
        decimal_places=2,
        max_digits=5,
        label="Share (%)",
    )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        email, share = cleaned.get("email"), cleaned.get("percent")
        if email and share is None and "percent" not in self.errors:
            self.add_error("percent", "Give this owner a share.")
        if share is not None and not email and "email" not in self.errors:
            self.add_error("email", "Whose share is this? Enter their email.")
        return cleaned


class BaseSplitFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        rows = self.shares()
        if not rows:
            raise forms.ValidationError("A split sheet needs at least one owner.")
        emails = [email for email, _ in rows]
        if len(set(emails)) != len(emails):
            raise forms.ValidationError("Each owner may appear once.")
        total = sum(bps for _, bps in rows)
        if total != 10_000:
            raise forms.ValidationError(
                f"The shares must add up to exactly 100%; they add up to {percent(total)}."
            )

    def add_problem(self, message: str) -> None:
        """A refusal from the service, shown above the rows like the formset's own errors."""
        self.non_form_errors()  # runs the cleaning first, so the error is not overwritten later
        self._non_form_errors = self.error_class([message], error_class="nonform")

    def _filled(self) -> list[forms.Form]:
        return [
            form
            for form in self.forms
            if form.cleaned_data.get("email") and form.cleaned_data.get("percent") is not None
        ]

    def shares(self) -> list[tuple[str, int]]:
        return [
            (form.cleaned_data["email"].lower(), int(form.cleaned_data["percent"] * BPS_PER_PERCENT))
            for form in self._filled()
        ]

    def details(self) -> dict[str, OwnerDetails]:
        return {
            form.cleaned_data["email"].lower(): OwnerDetails(
                name=form.cleaned_data.get("name", ""), role=form.cleaned_data.get("role", "")
            )
            for form in self._filled()
        }


SplitFormSet = forms.formset_factory(
    SplitShareForm, formset=BaseSplitFormSet, extra=2, max_num=50, validate_max=True
)


# The form field that holds each term a conflict names.
TERM_FIELDS = {
    "derivative_share_bps": "derivative_share",
    "licence_fee_minor": "licence_fee",
    "expires_at": "expires_on",
}


def _use_field(use_class: str) -> str:
    return use_class.replace("-", "_")


class OfferTermsForm(forms.Form):
    """A new version of a work's terms. Prices are typed in the currency's major unit (dollars, euros)."""

    currency = forms.ChoiceField(choices=[(code, code) for code in currency.SUPPORTED], initial="USD")
    licence_fee = forms.DecimalField(
        min_value=Decimal(0),
        max_digits=14,
        label="Licence fee",
        help_text="Paid once when someone accepts the licence. Type 0 for a free licence.",
        error_messages={"required": "Set the licence fee (0 for a free licence)."},
    )
    commercial_use = forms.BooleanField(required=False, label="Allow commercial use")
    attribution_required = forms.BooleanField(required=False, initial=True, label="Require credit")
    derivative_share = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=2,
        label="Your share of derivatives (%)",
        help_text="What you receive of each derivative's revenue (only when you allow derivative works).",
    )
    derivative_approval_required = forms.BooleanField(
        required=False, label="I approve each derivative licence"
    )
    territories = forms.CharField(
        required=False, help_text="Country codes such as FR, DE. Leave empty for worldwide."
    )
    expires_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Offer ends on"
    )
    quota = forms.IntegerField(
        required=False, min_value=1, label="Uses per licence", help_text="Leave empty for unlimited."
    )
    explicit_content_forbidden = forms.BooleanField(
        required=False,
        label="No explicit lyrics",
        help_text="Fans declare each vocal clean; a vocal declared explicit is refused.",
    )
    max_vocal_seconds = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=3600,
        label="Longest vocal (seconds)",
        help_text="Leave empty for no cap.",
    )
    release_approval_required = forms.BooleanField(
        required=False, label="I approve each release before it goes on sale"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for use_class, label in UseClass.choices:
            name = _use_field(use_class)
            self.fields[f"allow_{name}"] = forms.BooleanField(required=False, label=label)
            self.fields[f"price_{name}"] = forms.DecimalField(
                required=False,
                min_value=Decimal(0),
                max_digits=14,
                label=f"Price per use: {label}",
                widget=forms.NumberInput(attrs={"placeholder": "0.00", "step": "any"}),
            )

    def use_rows(self) -> Iterator[tuple[str, forms.BoundField, forms.BoundField]]:
        for use_class, label in UseClass.choices:
            name = _use_field(use_class)
            yield label, self[f"allow_{name}"], self[f"price_{name}"]

    def clean_territories(self) -> list[str]:
        codes = sorted(
            {code.strip().upper() for code in re.split(r"[,\s]+", self.cleaned_data["territories"])}
        )
        codes = [code for code in codes if code]
        bad = [code for code in codes if not _COUNTRY.match(code)]
        if bad:
            raise forms.ValidationError(
                f"Use two-letter country codes (like FR or JP); not: {', '.join(bad)}."
            )
        return codes

    def clean_expires_on(self) -> datetime | None:
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        moment = datetime.combine(day, time(23, 59, 59), tzinfo=timezone.get_current_timezone())
        if moment <= clock.now():
            raise forms.ValidationError("Pick a day in the future, or leave it empty.")
        return moment

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        code = cleaned.get("currency") or "USD"
        uses: dict[str, int] = {}
        for use_class, label in UseClass.choices:
            name = _use_field(use_class)
            price = cleaned.get(f"price_{name}")
            if not cleaned.get(f"allow_{name}"):
                if price is not None and not self.has_error(f"price_{name}"):
                    self.add_error(
                        f"price_{name}",
                        f"You set a price for “{label}” but do not allow it: tick it, or clear the price.",
                    )
                continue
            if price is None:
                if not self.has_error(f"price_{name}"):
                    self.add_error(f"price_{name}", f"Set a price per use for “{label}” (0 for free).")
                continue
            try:
                uses[use_class] = to_minor(price, code, f"price_{name}")
            except forms.ValidationError as exc:
                self.add_error(None, exc)
        if not uses and not self.has_error("allow_ai_train"):
            self.add_error("allow_ai_train", "Allow at least one use.")
        fee = cleaned.get("licence_fee")
        if fee is not None:
            try:
                cleaned["licence_fee_minor"] = to_minor(fee, code, "licence_fee")
            except forms.ValidationError as exc:
                self.add_error(None, exc)
        share = cleaned.get("derivative_share")
        derivatives = bool(cleaned.get(f"allow_{_use_field(UseClass.DERIVATIVE)}"))
        if share is None and derivatives and not self.has_error("derivative_share"):
            self.add_error("derivative_share", "Choose your share of derivatives' revenue (0 for none).")
        if share and not derivatives and not self.has_error("derivative_share"):
            self.add_error("derivative_share", "A share of derivatives needs derivative works to be allowed.")
        cleaned["uses"] = uses
        if not self.errors:
            for conflict in terms_conflicts(self.terms(cleaned)):
                self.add_error(TERM_FIELDS.get(conflict.term, conflict.term), conflict.message)
        return cleaned

    def terms(self, cleaned: dict[str, Any] | None = None) -> Terms:
        data = self.cleaned_data if cleaned is None else cleaned
        return Terms(
            currency=data["currency"],
            uses=data["uses"],
            commercial_use=data["commercial_use"],
            attribution_required=data["attribution_required"],
            derivative_share_bps=int((data["derivative_share"] or 0) * BPS_PER_PERCENT),
            derivative_approval_required=data["derivative_approval_required"],
            licence_fee_minor=data["licence_fee_minor"],
            territories=data["territories"],
            expires_at=data["expires_on"],
            quota=data["quota"],
            explicit_content_allowed=not data["explicit_content_forbidden"],
            max_vocal_seconds=data["max_vocal_seconds"],
            release_approval_required=data["release_approval_required"],
        )


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Where the key will be used, e.g. 'training cluster'.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.READ],
        error_messages={"required": "Choose at least one thing the key may do."},
    )
    expires_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Expires on"
    )

    def clean_expires_on(self) -> datetime | None:
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        moment = datetime.combine(day, time(0, 0), tzinfo=timezone.get_current_timezone())
        if moment <= clock.now():
            raise forms.ValidationError("Pick a day in the future, or leave it empty.")
        return moment


class ClaimDecideForm(forms.Form):
    decision = forms.ChoiceField(choices=ClaimDecision.choices)
    price_minor = forms.IntegerField(
        required=False,
        min_value=1,
        label="Price",
        help_text="Only for monetizing a vendor's output whose use your terms do not price.",
    )
    currency = forms.RegexField(r"^[A-Z]{3}$", required=False, initial="USD")


class AppealForm(forms.Form):
    statement = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=5000,
        help_text="What the resolution missed. A claim is appealed once; the next resolution is final.",
    )


class DisputeForm(forms.Form):
    statement = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=5000,
        help_text="Why the claim is wrong: your licence, your own original work, or a false match.",
    )


class ResolveForm(forms.Form):
    resolution = forms.ChoiceField(choices=ClaimResolution.choices, widget=forms.RadioSelect)
    statement = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)


class SpendCapForm(forms.Form):
    """A monthly spend cap for the organisation or one of its keys; an empty amount removes the cap."""

    applies_to = forms.ChoiceField(label="Applies to")
    currency = forms.ChoiceField(choices=[(code, code) for code in currency.SUPPORTED], initial="USD")
    amount = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        label="Monthly cap",
        help_text="In the currency's units, e.g. 100.00. Leave empty to remove the cap.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._organisations = {org.pk: org for org in account_selectors.organisations_of(user=user)}
        keys = (
            account_selectors.api_keys_visible_to(user=user)
            .filter(organisation_id__in=self._organisations, revoked_at__isnull=True)
            .select_related("organisation")
            .order_by("organisation_id", "name", "pk")
        )
        self._keys = {key.pk: key for key in keys}
        choices = [(f"org:{pk}", f"{org.name} (all keys)") for pk, org in self._organisations.items()]
        choices += [(f"key:{pk}", f"Key “{key.name}” ({key.prefix}…)") for pk, key in self._keys.items()]
        field = self.fields["applies_to"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        target = cleaned.get("applies_to", "")
        kind, _, pk = target.partition(":")
        if kind == "key" and pk.isdigit() and int(pk) in self._keys:
            key = self._keys[int(pk)]
            cleaned["api_key"], cleaned["organisation"] = key, key.organisation
        elif kind == "org" and pk.isdigit() and int(pk) in self._organisations:
            cleaned["api_key"], cleaned["organisation"] = None, self._organisations[int(pk)]
        elif "applies_to" not in self.errors:
            self.add_error("applies_to", "Choose your organisation or one of its keys.")
        amount = cleaned.get("amount")
        code = cleaned.get("currency") or "USD"
        if amount is None:
            cleaned["cap_minor"] = None
        else:
            try:
                cleaned["cap_minor"] = to_minor(amount, code, "amount")
            except forms.ValidationError as exc:
                self.add_error(None, exc)
        return cleaned

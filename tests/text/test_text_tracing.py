"""Tracing text: an LLM answer that quotes a registered article is traced back to it, passage by passage;
an unlicensed quote in a vendor's output opens a claim; unrelated text matches nothing."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from catalog.models import Claim, Work
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from tests import factories
from tests.text import samples

pytestmark = pytest.mark.django_db


def register_text(owner, text: str, *, title: str = "Harbour", kind: str = "article", **terms) -> Work:
    work = factories.work(owner, kind=kind, title=title)
    factories.offer(owner, work, **(terms or {"uses": {"ai-input": 0}, "token_prices": {"ai-input": 20}}))
    upload = asset_upload(work=work, user=owner, data=text.encode(), filename=f"{title}.txt")
    fingerprint_asset(upload.asset.pk)
    return work


def _lightly_edited(passage: str) -> str:
    """About one word in ten changed, dropped or added, and the case and punctuation of a chat answer."""
    words = passage.split()
    words[5] = "quietly"
    del words[17]
    words.insert(30, "really")
    words[41] = words[41].upper()
    return " ".join(words).replace(",", "")


def test_an_llm_answer_quoting_an_article_is_traced_to_it_with_the_passage_on_both_sides(with_key) -> None:
    writer, vendor = factories.creator(), factories.vendor()
    article = register_text(writer, samples.ARTICLE)
    register_text(writer, samples.OTHER, title="Spreadsheets")
    source = article.text_versions.get().text
    spans = [m.span() for m in re.finditer(r"\S+", source)]
    quote_start, quote_end = spans[60][0], spans[109][1]  # 50 words from the second paragraph
    quoted = " ".join(source[quote_start:quote_end].split())
    answer = (
        "Here is what the story says about the missing boat. "
        + _lightly_edited(quoted)
        + " I hope this summary helps with your essay about coastal towns."
    )

    response = with_key(factories.key(vendor, "read")).post("/api/v1/trace", {"text": answer}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["media_type"] == "text/plain" and body["manifest"] is None
    assert [(m["work"], m["kind"], m["covered"]) for m in body["matches"]] == [(article.pk, "quote", False)]
    match = body["matches"][0]
    assert match["confidence"] > 0.99 and 0.5 < match["overlap"] <= 1.0
    [passage] = match["passages"]
    assert passage["source_text"] == source[passage["source_start"] : passage["source_end"]]
    assert passage["query_text"] == answer[passage["query_start"] : passage["query_end"]]
    assert passage["source_version"] == 1
    # The passage found covers the quote, less at most a few words at its ends (edits there, and the
    # reference keeps only some of its shingles).
    assert quote_start <= passage["source_start"] < quote_start + 80
    assert quote_end - 80 < passage["source_end"] <= quote_end


def test_a_trace_of_unrelated_text_matches_nothing(with_key) -> None:
    writer, vendor = factories.creator(), factories.vendor()
    register_text(writer, samples.ARTICLE)
    unrelated = (
        "Compilers translate a program written in one language into another, usually a lower level one. "
        "Most of their work happens in the middle: the program is turned into an intermediate form that is "
        "easy to analyse, and a series of passes removes dead code, folds constants and moves loop "
        "invariant computations out of loops before the back end chooses machine instructions."
    )

    response = with_key(factories.key(vendor, "read")).post(
        "/api/v1/trace", {"text": unrelated}, format="json"
    )

    assert response.status_code == 200 and response.json()["matches"] == []


def test_an_unlicensed_quote_in_a_vendor_output_opens_a_claim_for_the_writer(with_key) -> None:
    writer, vendor = factories.creator(), factories.vendor()
    article = register_text(writer, samples.ARTICLE)
    source = article.text_versions.get().text
    answer = "Summary: " + " ".join(source.split()[150:200]) + " That is all."
    client = with_key(factories.key(vendor, "outputs"))

    response = client.post(
        "/api/v1/outputs", {"file": SimpleUploadedFile("answer.txt", answer.encode())}, format="multipart"
    )

    assert response.status_code == 201
    body = response.json()
    assert [m["work"] for m in body["uncovered"]] == [article.pk]
    claim = Claim.objects.get()
    assert (claim.work, claim.respondent, claim.match_kind, claim.status) == (
        article,
        vendor,
        "quote",
        "open",
    )
    assert body["claims"] == [claim.pk]


def test_a_text_that_quotes_another_writers_article_opens_a_claim_when_registered(with_key) -> None:
    writer, copier = factories.creator(), factories.creator()
    original = register_text(writer, samples.ARTICLE)
    source = original.text_versions.get().text
    copy = "My own story begins here. " + " ".join(source.split()[0:60]) + " And then it ends differently."

    copied = register_text(copier, copy, title="Not mine")

    claim = Claim.objects.get()
    assert (claim.work, claim.respondent, claim.subject_asset.work) == (original, copier, copied)


def test_manage_py_trace_reads_text_from_a_file(tmp_path, capsys) -> None:
    writer = factories.creator()
    article = register_text(writer, samples.ARTICLE)
    source = article.text_versions.get().text
    path = tmp_path / "answer.md"
    path.write_text("# Answer\n\n" + " ".join(source.split()[100:150]) + "\n")

    call_command("trace", str(path))

    out = capsys.readouterr().out
    assert f"quote work #{article.pk} “Harbour”" in out and "(v1)" in out


def test_text_sent_as_text_is_never_taken_for_media_whatever_it_starts_with(with_key) -> None:
    vendor = factories.vendor()
    client = with_key(factories.key(vendor, "read"))

    response = client.post(
        "/api/v1/trace", {"text": "ID3 tags hold the artist and title of an MP3 file."}, format="json"
    )
    neither = client.post("/api/v1/trace", {}, format="json")

    assert response.status_code == 200
    assert (response.json()["media_type"], response.json()["matches"]) == ("text/plain", [])
    assert neither.status_code == 400 and neither.json()["code"] == "validation_error"

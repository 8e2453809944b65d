"""C2PA content credentials for generated media, with the `c2pa-python` package. Pure: no Django.

A generated derivative carries one signed manifest naming:
- its parents as ingredients (`parentOf`: the licensed works' files) and the fan's own material
  (`componentOf`);
- the `c2pa.actions.v2` assertion with the `c2pa.created` action and the IPTC digital source type
  `trainedAlgorithmicMedia`: the "AI-generated" marker readers look for;
- our `org.tribute.licence` assertion: the grant id, the terms URL, the access receipts paid for the
  generation, the parents' work ids and royalty shares.

Signing needs a certificate chain whose signing certificate carries SubjectKeyIdentifier,
AuthorityKeyIdentifier and the emailProtection extended key usage (what the C2PA trust model accepts);
`development_credentials` makes such a chain under a self-signed development root. Readers report a
signer as trusted only when its root is among the trust anchors they are given.
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

LICENCE_LABEL: Final = "org.tribute.licence"
ACTIONS_LABEL: Final = "c2pa.actions.v2"
TRAINED_ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CLAIM_GENERATOR: Final = "Tribute studio"
CLAIM_GENERATOR_VERSION: Final = "1"
SIGNING_ALGORITHMS: Final = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
DEVELOPMENT_BACKDATE_DAYS: Final = 3 * 365  # a development chain is valid from this long before it was made


class ProvenanceError(Exception):
    """The manifest could not be made or read (unsupported format, bad credentials, damaged store)."""


@dataclass(frozen=True)
class Credentials:
    """A signing certificate chain (PEM, signing certificate first) and its private key (PEM)."""

    certificate_chain_pem: bytes
    private_key_pem: bytes = field(repr=False)
    algorithm: str = "es256"
    timestamp_url: str = ""

    def __post_init__(self) -> None:
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise ProvenanceError(f"unknown signing algorithm {self.algorithm!r}")


@dataclass(frozen=True)
class DevelopmentChain:
    credentials: Credentials
    root_pem: bytes


@dataclass(frozen=True)
class Ingredient:
    title: str
    media_type: str
    data: bytes
    relationship: str = "parentOf"  # or "componentOf"


@dataclass(frozen=True)
class ManifestSummary:
    """What a reader needs to know from a file's active manifest."""

    title: str
    claim_generator: str
    signer: str
    issuer: str
    validation_state: str  # "Trusted", "Valid" (signature good, signer unknown) or "Invalid"
    ai_generated: bool
    digital_source_type: str
    ingredients: list[dict[str, str]]
    licence: dict[str, Any] | None
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "claim_generator": self.claim_generator,
            "signer": self.signer,
            "issuer": self.issuer,
            "validation_state": self.validation_state,
            "ai_generated": self.ai_generated,
            "digital_source_type": self.digital_source_type,
            "ingredients": self.ingredients,
            "licence": self.licence,
            "problems": self.problems,
        }


def supported(media_type: str) -> bool:
    import c2pa

    return media_type in set(c2pa.Builder.get_supported_mime_types())


def development_credentials(*, organisation: str = "Tribute development") -> DevelopmentChain:
    """A self-signed development root and an ES256 signing certificate issued by it (for DEBUG and
    tests; production signs with a real certificate from configuration)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    # Valid from long before it was made: the c2pa library checks the certificate against the system clock
    # when it signs, which need not agree with the clock that made it (a test moves its process's clock;
    # an operator sets a machine's).
    now = datetime.datetime.now(datetime.UTC)
    made_at = now - datetime.timedelta(days=DEVELOPMENT_BACKDATE_DAYS)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(made_at)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} content credentials"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                ]
            )
        )
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(made_at)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return DevelopmentChain(
        credentials=Credentials(
            certificate_chain_pem=leaf.public_bytes(pem) + root.public_bytes(pem),
            private_key_pem=key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
        root_pem=root.public_bytes(pem),
    )


def _key_usage(*, signing: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def _context(trust_anchors_pem: bytes | None) -> Any:
    import c2pa

    config: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
    if trust_anchors_pem:
        config["trust"] = {"user_anchors": trust_anchors_pem.decode("ascii")}
        config["verify"] = {"verify_trust": True}
    return c2pa.Context(settings=c2pa.Settings.from_dict(config))


def sign(
    *,
    data: bytes,
    media_type: str,
    title: str,
    ingredients: Sequence[Ingredient],
    licence: Mapping[str, Any],
    credentials: Credentials,
    generator: str = "",
) -> bytes:
    """`data` with an embedded, signed manifest. Raises ProvenanceError if it cannot be made."""
    import c2pa

    if not supported(media_type):
        raise ProvenanceError(f"C2PA manifests cannot be embedded in {media_type}")
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
    if generator:
        action["softwareAgent"] = {"name": generator}
    manifest = {
        "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": CLAIM_GENERATOR_VERSION}],
        "title": title,
        "format": media_type,
        "assertions": [
            {"label": ACTIONS_LABEL, "data": {"actions": [action]}},
            {"label": LICENCE_LABEL, "data": dict(licence)},
        ],
    }
    info = c2pa.C2paSignerInfo(
        alg=credentials.algorithm.encode("ascii"),
        sign_cert=credentials.certificate_chain_pem,
        private_key=credentials.private_key_pem,
        ta_url=credentials.timestamp_url.encode("ascii") if credentials.timestamp_url else None,
    )
    try:
        signer = c2pa.Signer.from_info(info)
        builder = c2pa.Builder(json.dumps(manifest), context=_context(None))
        for ingredient in ingredients:
            if not supported(ingredient.media_type):
                raise ProvenanceError(f"an ingredient in {ingredient.media_type} cannot be described")
            builder.add_ingredient(
                json.dumps({"title": ingredient.title, "relationship": ingredient.relationship}),
                ingredient.media_type,
                io.BytesIO(ingredient.data),
            )
        out = io.BytesIO()
        builder.sign(signer, media_type, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"the manifest could not be signed: {exc}") from None
    return out.getvalue()


def read(data: bytes, media_type: str, *, trust_anchors_pem: bytes | None = None) -> ManifestSummary | None:
    """The active manifest's summary, or None when the file carries no manifest (or a format C2PA does
    not cover). A damaged manifest is reported with validation state "Invalid", never raised."""
    import c2pa

    if not supported(media_type):
        return None
    try:
        reader = c2pa.Reader(media_type, io.BytesIO(data), context=_context(trust_anchors_pem))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "ManifestNotFound" in str(exc):
            return None
        return ManifestSummary(
            title="",
            claim_generator="",
            signer="",
            issuer="",
            validation_state="Invalid",
            ai_generated=False,
            digital_source_type="",
            ingredients=[],
            licence=None,
            problems=[f"the manifest cannot be read: {exc}"],
        )
    try:
        store = json.loads(reader.json())
        state = str(reader.get_validation_state() or "")
    finally:
        reader.close()
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    assertions = {item.get("label"): item.get("data") for item in active.get("assertions", [])}
    actions = (assertions.get(ACTIONS_LABEL) or {}).get("actions", [])
    source_types = [str(a.get("digitalSourceType", "")) for a in actions if a.get("digitalSourceType")]
    generator_info = active.get("claim_generator_info") or [{}]
    signature = active.get("signature_info") or {}
    problems = [
        f"{item.get('code')}: {item.get('explanation', '')}".strip()
        for item in store.get("validation_status") or []
    ]
    return ManifestSummary(
        title=str(active.get("title", "")),
        claim_generator=str(generator_info[0].get("name", "")),
        signer=str(signature.get("common_name", "")),
        issuer=str(signature.get("issuer", "")),
        validation_state=state,
        ai_generated=TRAINED_ALGORITHMIC_MEDIA in source_types,
        digital_source_type=source_types[0] if source_types else "",
        ingredients=[
            {"title": str(item.get("title", "")), "relationship": str(item.get("relationship", ""))}
            for item in active.get("ingredients", [])
        ],
        licence=assertions.get(LICENCE_LABEL),
        problems=problems,
    )

from __future__ import annotations

import io
from typing import Any

import factory
import numpy as np
import soundfile
from PIL import Image

from accounts.models import Role, User
from accounts.services import api_key_create, user_create
from catalog.models import Offer, Work
from catalog.services import Terms, offer_publish, work_create


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    role = Role.CREATOR

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        return user_create(
            username=kwargs["username"],
            email=kwargs["email"],
            password=kwargs.get("password", "correct horse battery staple"),
            role=kwargs["role"],
            display_name=kwargs.get("display_name", ""),
            organisation_name=kwargs.get("organisation_name", ""),
            email_verified=kwargs.get("email_verified", True),
        )


def creator(**kwargs: Any) -> User:
    return UserFactory.create(role=Role.CREATOR, **kwargs)


def fan(**kwargs: Any) -> User:
    return UserFactory.create(role=Role.FAN, **kwargs)


def vendor(**kwargs: Any) -> User:
    name = kwargs.pop("organisation_name", "Acme AI")
    return UserFactory.create(role=Role.VENDOR, organisation_name=name, **kwargs)


def work(owner: User, *, kind: str = "image", title: str = "A work") -> Work:
    return work_create(user=owner, title=title, kind=kind)


def offer(owner: User, work_: Work, **terms: Any) -> Offer:
    fields: dict[str, Any] = {"currency": "USD", "uses": {"ai-train": 5, "derivative": 0}}
    fields.update(terms)
    if "derivative" in fields["uses"]:
        fields.setdefault("derivative_share_bps", 5000)
    return offer_publish(work=work_, user=owner, terms=Terms(**fields))


def key(user: User, *scopes: str) -> str:
    return api_key_create(user=user, name="test", scopes=list(scopes or ("read", "write"))).secret


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="WAV")
    return buffer.getvalue()

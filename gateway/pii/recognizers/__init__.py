"""German-first recognizers (each in its own module) and the registry factory."""

from __future__ import annotations

from presidio_analyzer import EntityRecognizer, RecognizerRegistry

import gateway.pii._offline  # noqa: F401  (before presidio)
from gateway.pii.recognizers.address import AddressRecognizer
from gateway.pii.recognizers.aktenzeichen import AktenzeichenRecognizer
from gateway.pii.recognizers.ausweis import AusweisRecognizer
from gateway.pii.recognizers.date_of_birth import DateOfBirthRecognizer
from gateway.pii.recognizers.email import EmailRecognizer
from gateway.pii.recognizers.flurstueck import FlurstueckRecognizer
from gateway.pii.recognizers.iban import IbanRecognizer
from gateway.pii.recognizers.kassenzeichen import KassenzeichenRecognizer
from gateway.pii.recognizers.kfz import KfzRecognizer
from gateway.pii.recognizers.kvnr import KvnrRecognizer
from gateway.pii.recognizers.person import PersonRecognizer
from gateway.pii.recognizers.phone import EnglishPhoneRecognizer, PhoneRecognizer
from gateway.pii.recognizers.plz_ort import PlzOrtRecognizer
from gateway.pii.recognizers.steuer_id import SteuerIdRecognizer
from gateway.pii.recognizers.sv_nummer import SvNummerRecognizer
from gateway.pii.recognizers.ust_id import UstIdRecognizer

__all__ = [
    "AddressRecognizer",
    "AktenzeichenRecognizer",
    "AusweisRecognizer",
    "DateOfBirthRecognizer",
    "EmailRecognizer",
    "EnglishPhoneRecognizer",
    "FlurstueckRecognizer",
    "IbanRecognizer",
    "KassenzeichenRecognizer",
    "KfzRecognizer",
    "KvnrRecognizer",
    "PersonRecognizer",
    "PhoneRecognizer",
    "PlzOrtRecognizer",
    "SteuerIdRecognizer",
    "SvNummerRecognizer",
    "UstIdRecognizer",
    "build_recognizers",
    "build_registry",
]


def build_recognizers(language: str) -> list[EntityRecognizer]:
    if language == "de":
        return [
            PersonRecognizer("de"),
            EmailRecognizer("de"),
            IbanRecognizer("de"),
            SteuerIdRecognizer("de"),
            UstIdRecognizer("de"),
            SvNummerRecognizer("de"),
            KvnrRecognizer("de"),
            AusweisRecognizer("de"),
            PhoneRecognizer("de"),
            KfzRecognizer("de"),
            PlzOrtRecognizer("de"),
            AddressRecognizer("de"),
            DateOfBirthRecognizer("de"),
            AktenzeichenRecognizer("de"),
            KassenzeichenRecognizer("de"),
            FlurstueckRecognizer("de"),
        ]
    if language == "en":
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            UkNinoRecognizer,
            UsSsnRecognizer,
        )

        return [
            PersonRecognizer("en"),
            EmailRecognizer("en"),
            IbanRecognizer("en"),
            EnglishPhoneRecognizer("en"),
            DateOfBirthRecognizer("en"),
            CreditCardRecognizer(supported_language="en"),
            UsSsnRecognizer(supported_language="en"),
            UkNinoRecognizer(supported_language="en"),
        ]
    raise ValueError(f"unsupported language: {language!r} (supported: 'de', 'en')")


def build_registry(language: str) -> RecognizerRegistry:
    registry = RecognizerRegistry(supported_languages=[language])
    for rec in build_recognizers(language):
        registry.add_recognizer(rec)
    return registry

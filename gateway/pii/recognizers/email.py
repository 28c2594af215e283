"""E-mail addresses - Presidio's recognizer with an offline public-suffix check."""

from __future__ import annotations

import tldextract
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import EmailRecognizer as _PresidioEmail

import gateway.pii._offline  # noqa: F401  (must precede tldextract / presidio)

# private extractor: no URLs to fetch, no on-disk cache, bundled snapshot only
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class EmailRecognizer(_PresidioEmail):
    def __init__(self, supported_language: str = "de") -> None:
        super().__init__(
            supported_language=supported_language, supported_entity="EMAIL", name="EmailRecognizer"
        )

    def validate_result(self, pattern_text: str) -> bool:
        return _EXTRACT(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        if "@" not in text:
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)

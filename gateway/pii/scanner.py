"""FreeTextScanner: German-first, offline PII detection and masking on Presidio."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from presidio_analyzer import AnalyzerEngine, RecognizerResult
from presidio_analyzer.nlp_engine import NlpEngine, NoOpNlpEngine
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerResult

import gateway.pii._offline  # noqa: F401  (must run before presidio / tldextract)
from gateway.pii.recognizers import build_registry

logger = logging.getLogger(__name__)

#: Presidio's entity names -> ours (for predefined recognizers used by ``en`` / NER)
_ENTITY_ALIASES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IBAN_CODE": "IBAN",
    "PER": "PERSON",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
}

#: spaCy NER models we would use if (and only if) they are installed
_NER_MODELS = {
    "de": ("de_core_news_lg", "de_core_news_md", "de_core_news_sm"),
    "en": ("en_core_web_lg", "en_core_web_md", "en_core_web_sm"),
}

_DIGIT_ENTITIES = (
    "IBAN",
    "STEUER_ID",
    "UST_ID",
    "SV_NUMMER",
    "KVNR",
    "AUSWEIS_NR",
    "PHONE",
    "KFZ_KENNZEICHEN",
    "PLZ_ORT",
    "ADDRESS",
    "DATE_OF_BIRTH",
    "AKTENZEICHEN",
    "KASSENZEICHEN",
    "FLURSTUECK",
    "CREDIT_CARD",
    "US_SSN",
    "UK_NINO",
)


@dataclass(frozen=True)
class Span:
    """A detected piece of personal data: ``text[start:end]`` is of ``type``."""

    start: int
    end: int
    type: str
    score: float


def installed_ner_model(language: str) -> str | None:
    """Name of an installed spaCy NER model for ``language`` (never downloads)."""
    import spacy.util

    for name in _NER_MODELS.get(language, ()):
        if spacy.util.is_package(name):
            return name
    return None


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    """Union overlapping spans (fail-safe: every character any recogniser flagged
    stays covered).  The merged span takes the type of its best member
    (highest score, then longest) and the highest score."""
    out: list[Span] = []
    best: Span | None = None
    for sp in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and sp.start < out[-1].end:
            cur = out[-1]
            assert best is not None
            if (sp.score, sp.end - sp.start) > (best.score, best.end - best.start):
                best = sp
            out[-1] = Span(cur.start, max(cur.end, sp.end), best.type, max(cur.score, sp.score))
        else:
            best = sp
            out.append(sp)
    return out


class _LRU:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: str) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class FreeTextScanner:
    """Detect and mask personal data in free text.

    ``analyze`` returns merged, non-overlapping spans; ``mask`` replaces each by
    ``<TYPE>``; ``mask_many`` masks a column of values with an LRU cache.  Any
    error propagates - the caller must fail closed; unmasked text is never
    returned on error.  Instances are safe to share between threads.
    """

    def __init__(
        self,
        language: str = "de",
        score_threshold: float = 0.5,
        *,
        use_ner: bool = False,
        cache_size: int = 50_000,
    ) -> None:
        if language not in _NER_MODELS:
            raise ValueError(f"unsupported language: {language!r} (supported: 'de', 'en')")
        self.language = language
        self.score_threshold = score_threshold
        registry = build_registry(language)
        nlp_engine: NlpEngine
        self.ner_model: str | None = None
        if use_ner:
            model = installed_ner_model(language)
            if model is None:
                raise RuntimeError(
                    f"use_ner=True but no spaCy model for {language!r} is installed "
                    f"(looked for {', '.join(_NER_MODELS[language])}); models are never downloaded"
                )
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            nlp_engine = SpacyNlpEngine(models=[{"lang_code": language, "model_name": model}])
            registry.add_recognizer(
                SpacyRecognizer(supported_language=language, supported_entities=["PERSON", "PER"])
            )
            self.ner_model = model
        else:
            nlp_engine = NoOpNlpEngine(models=[{"lang_code": language, "model_name": "none"}])
        nlp_engine.load()
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=[language],
            default_score_threshold=score_threshold,
        )
        self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        self._operators = {"DEFAULT": OperatorConfig("replace")}  # default value is "<ENTITY_TYPE>"
        self._cache = _LRU(cache_size)
        supported = set(self._analyzer.get_supported_entities(language))
        self._digit_entities = [e for e in _DIGIT_ENTITIES if e in supported]
        self._has_person = "PERSON" in supported or "PER" in supported
        self._ner = use_ner

    # ------------------------------------------------------------------ analysis
    def _entities_for(self, text: str) -> list[str] | None:
        """Cheap pre-filter: which recogniser groups can possibly fire?"""
        if self._ner:
            return None  # all
        entities: list[str] = []
        if any(ch.isdigit() for ch in text):
            entities.extend(self._digit_entities)
        if "@" in text:
            entities.append("EMAIL")
        if self._has_person and not text.islower() and any(ch.isupper() for ch in text):
            entities.append("PERSON")
        return entities

    def analyze(self, text: str) -> list[Span]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if not text:
            return []
        entities = self._entities_for(text)
        if entities == []:
            return []
        results: list[RecognizerResult] = self._analyzer.analyze(
            text=text,
            language=self.language,
            entities=entities,
            score_threshold=self.score_threshold,
        )
        spans = [
            Span(r.start, r.end, _ENTITY_ALIASES.get(r.entity_type, r.entity_type), float(r.score))
            for r in results
            if r.score >= self.score_threshold and r.end > r.start
        ]
        return merge_spans(spans)

    # ------------------------------------------------------------------ masking
    def mask(self, text: str) -> str:
        spans = self.analyze(text)
        if not spans:
            return text
        result = self._anonymizer.anonymize(
            text=text,
            analyzer_results=[AnonymizerResult(s.type, s.start, s.end, s.score) for s in spans],
            operators=self._operators,
        )
        masked: str = result.text
        return masked

    def mask_many(self, texts: Sequence[str | None]) -> list[str | None]:
        out: list[str | None] = []
        cache = self._cache
        for text in texts:
            if text is None:
                out.append(None)
                continue
            if not isinstance(text, str):
                raise TypeError(f"mask_many expects str or None, got {type(text).__name__}")
            cached = cache.get(text)
            if cached is None:
                cached = self.mask(text)  # exceptions propagate: never fall back to the raw text
                cache.put(text, cached)
            out.append(cached)
        return out

    def clear_cache(self) -> None:
        self._cache.clear()


_SCANNERS: dict[str, FreeTextScanner] = {}
_SCANNERS_LOCK = threading.Lock()


def get_scanner(language: str = "de") -> FreeTextScanner:
    """Process-wide shared scanner per language (created once, thread-safe)."""
    scanner = _SCANNERS.get(language)
    if scanner is None:
        with _SCANNERS_LOCK:
            scanner = _SCANNERS.get(language)
            if scanner is None:
                scanner = FreeTextScanner(language)
                _SCANNERS[language] = scanner
    return scanner

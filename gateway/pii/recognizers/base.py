"""Shared base class for the German pattern recognizers.

Presidio's stock ``PatternRecognizer.analyze`` hands only the matched substring
to ``validate_result`` and relies on NLP lemmas for context words - which a
model-free pipeline does not produce.  ``GermanPatternRecognizer`` keeps the
Presidio contract (it *is* a ``PatternRecognizer``, returns
``RecognizerResult`` objects, keeps ``validate_result``/``invalidate_result``)
but:

* matches with the ``regex`` module, case-sensitively unless a pattern says
  otherwise, and may report only the named group ``pii`` of a match (so a label
  such as ``Az.`` or ``geb.`` is context, not part of the masked span);
* looks for context words in a window of raw text before the match (no lemmas
  needed) and raises the score by ``CONTEXT_BOOST``; optional negative context
  words drop the match;
* lets subclasses refine a hit with ``refine(text, start, end, score)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts


def words_regex(words: Sequence[str], *, ignore_case: bool = True) -> regex.Pattern[str]:
    """Regex matching any of ``words`` as whole words (``words`` are regex fragments)."""
    flags = regex.IGNORECASE if ignore_case else 0
    body = "|".join(sorted(words, key=len, reverse=True))
    return regex.compile(rf"(?<![\w])(?:{body})(?![\w])", flags)


class GermanPatternRecognizer(PatternRecognizer):
    ENTITY: ClassVar[str] = ""
    #: (name, regex, base score)
    PATTERN_SPECS: ClassVar[Sequence[tuple[str, str, float]]] = ()
    FLAGS: ClassVar[int] = regex.VERBOSE
    CONTEXT_WORDS: ClassVar[Sequence[str]] = ()
    NEGATIVE_CONTEXT_WORDS: ClassVar[Sequence[str]] = ()
    CONTEXT_WINDOW: ClassVar[int] = 45
    CONTEXT_BOOST: ClassVar[float] = 0.35
    #: the cheap pre-filter: the text must contain one of these characters/classes
    NEEDS_DIGIT: ClassVar[bool] = True

    def __init__(self, supported_language: str = "de") -> None:
        patterns = [Pattern(name, rx, score) for name, rx, score in self.PATTERN_SPECS]
        super().__init__(
            supported_entity=self.ENTITY,
            name=type(self).__name__,
            supported_language=supported_language,
            patterns=patterns,
            context=[w.replace("\\", "") for w in self.CONTEXT_WORDS],
            global_regex_flags=self.FLAGS,
        )
        self._compiled = [(p, regex.compile(p.regex, self.FLAGS)) for p in patterns]
        self._context_re = words_regex(self.CONTEXT_WORDS) if self.CONTEXT_WORDS else None
        self._negative_re = words_regex(self.NEGATIVE_CONTEXT_WORDS) if self.NEGATIVE_CONTEXT_WORDS else None

    # ------------------------------------------------------------------ hooks
    def has_context(self, text: str, start: int, end: int) -> bool:
        if self._context_re is None:
            return False
        window = text[max(0, start - self.CONTEXT_WINDOW) : start]
        return self._context_re.search(window) is not None

    def has_negative_context(self, text: str, start: int) -> bool:
        if self._negative_re is None:
            return False
        window = text[max(0, start - 25) : start]
        return self._negative_re.search(window) is not None

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        """Validate/adjust a raw match; return ``None`` to drop it."""
        value = text[start:end]
        valid = self.validate_result(value)
        if valid is False or self.invalidate_result(value):
            return None
        if valid is True:
            return start, end, 1.0
        if self.has_negative_context(text, start):
            return None
        if self.has_context(text, start, end):
            score = min(1.0, score + self.CONTEXT_BOOST)
        return start, end, score

    # ------------------------------------------------------------------ presidio API
    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        if self.NEEDS_DIGIT and not any(ch.isdigit() for ch in text):
            return []
        results: list[RecognizerResult] = []
        for pattern, compiled in self._compiled:
            use_group = "pii" in compiled.groupindex
            for m in compiled.finditer(text):
                start, end = m.span("pii") if use_group else m.span()
                if start < 0 or start == end:
                    continue
                refined = self.refine(text, start, end, pattern.score)
                if refined is None:
                    continue
                s, e, score = refined
                results.append(
                    RecognizerResult(
                        entity_type=self.ENTITY,
                        start=s,
                        end=e,
                        score=score,
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            "pattern": pattern.name,
                        },
                    )
                )
        return results

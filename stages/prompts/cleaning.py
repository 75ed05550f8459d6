"""Turning raw LLM answers into prompts: clean, validate, de-duplicate, and count every rejection.

The reference only strips whitespace. Chat models wrap answers in quotes, number them, add a
preamble line ("Sure! Here is a description:") or run past the sentence; each of those is either
repaired here or rejected with a named reason, so a failing run says *why* it fell short.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stages.prompts.records import Candidate

QUOTES = "\"'`“”‘’«»„"
# "1.", "2)", "(3)", "-", "*", "•", "Prompt 4:", "Description:" at the start of a line.
_LEAD = re.compile(r"^(?:[-*•–—>#]+|\(?\d{1,3}[.):]|(?:prompt|description|caption)\s*\d*\s*[:.-])\s*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]|_")

REASONS = ("truncated", "empty", "non_printable", "too_short", "too_long", "missing_prefix", "duplicate")


def _clean_line(line: str) -> str:
    text = _SPACE.sub(" ", line.replace("**", "")).strip()
    previous = None
    while text != previous:
        previous = text
        text = _LEAD.sub("", text).strip().strip(QUOTES).strip()
    return text


def _starts_with(text: str, prefixes: Sequence[str]) -> bool:
    folded = text.casefold()
    return any(folded.startswith(p.casefold()) for p in prefixes)


def clean_prompt(raw: str, prefixes: Sequence[str] = ()) -> str:
    """One line of text: the first line that starts with a wanted prefix, else the first non-empty one."""
    lines = [c for c in (_clean_line(line) for line in raw.splitlines()) if c]
    if not lines:
        return ""
    if prefixes:
        for line in lines:
            if _starts_with(line, prefixes):
                return line
    return lines[0]


def normalise(text: str) -> str:
    """The de-duplication key: case, punctuation and spacing do not make two prompts different."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.casefold())).strip()


def rejection_reason(
    text: str, *, min_words: int, max_words: int, prefixes: Sequence[str] = (), truncated: bool = False
) -> str | None:
    """Why a cleaned prompt is unusable (one of REASONS), or None when it is fine."""
    if truncated:
        return "truncated"
    if not text:
        return "empty"
    if not text.isprintable() or "\ufffd" in text:
        return "non_printable"
    words = len(text.split())
    if words < min_words:
        return "too_short"
    if words > max_words:
        return "too_long"
    if prefixes and not _starts_with(text, prefixes):
        return "missing_prefix"
    return None


@dataclass
class Accepted:
    text: str
    attempt: int
    seed: int


@dataclass
class PromptCollector:
    """Accumulates unique valid prompts across request rounds and remembers what it threw away."""

    count: int
    min_words: int
    max_words: int
    prefixes: Sequence[str] = ()
    accepted: list[Accepted] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    generated: int = 0
    surplus: int = 0
    attempts: int = 0
    _seen: set[str] = field(default_factory=set)

    @property
    def missing(self) -> int:
        return max(0, self.count - len(self.accepted))

    def add(self, candidates: Iterable[Candidate], attempt: int) -> None:
        self.attempts = max(self.attempts, attempt + 1)
        for cand in candidates:
            self.generated += 1
            text = clean_prompt(cand.text, self.prefixes)
            reason = rejection_reason(
                text, min_words=self.min_words, max_words=self.max_words, prefixes=self.prefixes,
                truncated=cand.truncated,
            )
            key = normalise(text)
            if reason is None and key in self._seen:
                reason = "duplicate"
            if reason is not None:
                self.rejected[reason] += 1
                self.examples.setdefault(reason, cand.text)
                continue
            if not self.missing:
                self.surplus += 1
                continue
            self._seen.add(key)
            self.accepted.append(Accepted(text, attempt, cand.seed))

    def stats(self) -> dict[str, object]:
        return {
            "asked": self.count,
            "generated": self.generated,
            "attempts": self.attempts,
            "unique": len(self.accepted),
            "surplus": self.surplus,
            "rejected": {r: self.rejected[r] for r in REASONS if self.rejected[r]},
        }

    def report(self) -> str:
        """A one-paragraph account of a shortfall: counts per reason and one raw example of each."""
        rejected = ", ".join(f"{r}={self.rejected[r]}" for r in REASONS if self.rejected[r]) or "none"
        examples = "; ".join(f"{r}: {self.examples[r][:80]!r}" for r in REASONS if r in self.examples)
        return (
            f"asked for {self.count} unique prompts, generated {self.generated} over {self.attempts} attempts, "
            f"rejected {sum(self.rejected.values())} ({rejected}), unique {len(self.accepted)}"
            + (f"; examples of rejected answers: {examples}" if examples else "")
        )

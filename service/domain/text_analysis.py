"""Summaries and keywords of an article's text: CPU work with YAKE (numpy, networkx...).

Imported only where a job runs it (``service.jobs``): the API workers never load YAKE and its
dependencies (about 25 MiB and a quarter of a second per process).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import yake

SUMMARY_SENTENCES = 3
KEYWORDS = 8

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Analysis:
    summary: str
    keywords: list[str]


def sentences(content: str) -> list[str]:
    """``content`` split into sentences (paragraphs first, then sentence ends)."""
    found = []
    for paragraph in content.split("\n"):
        found += [s.strip() for s in _SENTENCE_END.split(paragraph.strip()) if s.strip()]
    return found


_local = threading.local()


def _extractor() -> yake.KeywordExtractor:
    """This thread's YAKE extractor: made once (it reads its stop-word file when made, 4% of
    an article's time), not shared between threads (it keeps a similarity cache)."""
    extractor = getattr(_local, "extractor", None)
    if extractor is None:
        extractor = _local.extractor = yake.KeywordExtractor(
            lan="en", n=2, top=KEYWORDS, dedupLim=0.7
        )
    return extractor


def analyse(title: str, content: str) -> Analysis:
    """Keywords by YAKE (no models or corpora to download) and a summary of the
    ``SUMMARY_SENTENCES`` sentences that carry the most of them, in their original order."""
    extractor = _extractor()
    ranked = [str(phrase) for phrase, _score in extractor.extract_keywords(f"{title}\n{content}")]
    keywords = list(dict.fromkeys(k.lower() for k in ranked))[:KEYWORDS]
    parts = sentences(content)
    if len(parts) <= SUMMARY_SENTENCES:
        return Analysis(" ".join(parts), keywords)
    weights = {word: len(keywords) - rank for rank, k in enumerate(keywords) for word in k.split()}

    def score(index: int) -> float:
        words = [w.lower() for w in _WORD.findall(parts[index])]
        hits = sum(weights.get(w, 0) for w in words)
        return hits / (len(words) ** 0.5 or 1) + (0.5 if index == 0 else 0.0)

    best = sorted(range(len(parts)), key=score, reverse=True)[:SUMMARY_SENTENCES]
    return Analysis(" ".join(parts[i] for i in sorted(best)), keywords)

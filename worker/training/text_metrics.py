"""How close generated answers are to the reference answers, as people read them.

Exact match (after trimming and collapsing whitespace), ROUGE-L F-measure (the longest
common word subsequence, Google's `rouge-score`) and chrF (character n-gram F-score,
`sacrebleu`, which suits short answers and any language). All three are shares in 0..1.
"""

from __future__ import annotations

import re


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def generation_scores(answers: list[str], references: list[str]) -> dict[str, float]:
    """exact_match, rouge_l and chrf of `answers` against `references` (same order)."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF

    if len(answers) != len(references) or not answers:
        raise ValueError("generation_scores needs one answer per reference, at least one")
    exact = sum(_normal(a) == _normal(r) for a, r in zip(answers, references, strict=True))
    # No stemming: the stemmer is English-only, and answers may be in any language.
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [
        scorer.score(r, a)["rougeL"].fmeasure for a, r in zip(answers, references, strict=True)
    ]
    chrf = CHRF().corpus_score(answers, [references]).score / 100
    return {
        "exact_match": exact / len(answers),
        "rouge_l": sum(rouge) / len(rouge),
        "chrf": chrf,
    }

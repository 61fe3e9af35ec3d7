"""Generation: teach a causal language model to answer like the dataset's responses.

Each row is a conversation (spec.ChatExamples; read and checked by conversations.py) whose
assistant turns are learned and whose prompts and system prompt are not (chat_tokens.py).
The model (causal_lm.py) returns each row's summed answer-token NLL and token count, so
the loss and perplexity are token-weighted over the whole set, as a language model's are.
The headline is validation loss (lower is better): every epoch can afford it, and
comparisons rank by it; the answers themselves are scored at the end on the test rows by
exact match, ROUGE-L and chrF (text_metrics.py), and a handful of validation prompts are
answered before training and after every epoch for people to read (generation_samples.py).

Frozen features with a new head, and LP-FT's probe, do not apply: the model's own output
layer writes the answers, and there is no new head to fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.training.hyperparameters import LP_FT, TRANSFER_FROZEN
from worker.training.tasks.base import Headline, RowsAreExamples
from worker.training.tasks.splitting import Split, stratified_split

if TYPE_CHECKING:
    import torch

    from worker.training.hyperparameters import TrainParams

NAME = "generation"
HEADLINE = Headline("loss", "validation loss", higher_is_better=False)
SCORED_ROWS = 100  # test rows answered for the generation scores: minutes at most on a CPU
SHOWN_ANSWERS = 10  # of those, listed on the job page
NOT_OFFERED = {
    TRANSFER_FROZEN: "A language model answers through its own output layer; there is no new "
    "head to fit on frozen features. Top k layers is the transfer-learning end for generation.",
    LP_FT: "LP-FT starts from a head fitted on frozen features, which generation does not "
    "have; use LoRA or all layers.",
}


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # past e^50 the number says nothing more


@dataclass
class GenerationJob(RowsAreExamples):
    examples: Any  # spec.ChatExamples
    headline: Headline = HEADLINE
    clf: Any = None  # causal_lm.CausalLM, met in attach
    book: Any = None  # generation_samples.SampleBook

    def attach(self, clf: Any, *, main: bool = True) -> None:
        """Meet the model and answer the sample prompts with it as it is, once per job (a
        resumed job finds the base answers already written; only the main process writes)."""
        from worker.training import job_files
        from worker.training.generation_samples import SAMPLE_PROMPTS, SampleBook

        self.clf = clf
        chosen = clf.spec.validation_idx[:SAMPLE_PROMPTS]
        rows = [
            {"index": int(i), **self.examples.describe(i), "reference": self.examples.labels[i]}
            for i in chosen
        ]
        self.book = SampleBook(job_files.samples(clf.output_dir), rows)
        if main and not self.book.has_base:
            self.book.set_base(self._answer([r["index"] for r in rows]))

    def _answer(self, idx: list[int]) -> list[str]:
        from worker.training.generation_samples import answer_budget, generate_answers

        model, tokenizer = self.clf.model, self.clf.tokenizer
        training = model.training
        model.eval()
        try:
            return generate_answers(
                model,
                tokenizer,
                [self.examples.conversations[i] for i in idx],
                max_new_tokens=answer_budget(tokenizer, [self.examples.labels[i] for i in idx]),
                device=self.clf.device,
            )
        finally:
            model.train(training)

    def epoch_end(self, epoch: int) -> dict[str, float]:
        """The sample prompts answered by this epoch's weights; their ROUGE-L is charted."""
        from worker.training.text_metrics import generation_scores

        idx = [r["index"] for r in self.book.data["rows"]]
        if not idx:
            return {}
        answers = self._answer(idx)
        self.book.add_epoch(epoch, answers)
        references = [self.examples.labels[i] for i in idx]
        return {"sample_rouge_l": generation_scores(answers, references)["rouge_l"]}

    def targets(self) -> torch.Tensor:
        import torch

        return torch.zeros(len(self.examples))  # the answers' tokens are in each batch

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, *, smoothed: bool = True
    ) -> torch.Tensor:
        return outputs[:, 0].sum() / outputs[:, 1].sum().clamp_min(1)

    def scores(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        total = outputs.astype(np.float64).sum(axis=0)
        loss = float(total[0] / max(total[1], 1.0))
        return {"loss": loss, "perplexity": perplexity(loss)}

    def tune(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        return {}

    def report(self, outputs: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """Loss and perplexity on every test row; the answers scored on up to SCORED_ROWS."""
        from worker.training.text_metrics import generation_scores

        scored = [int(i) for i in np.asarray(rows)[:SCORED_ROWS]]
        answers = self._answer(scored)
        references = [self.examples.labels[i] for i in scored]
        return {
            "scores": self.scores(outputs, rows) | generation_scores(answers, references),
            "views": {
                "generation_rows": len(scored),
                "test_answers": [
                    {"index": i, **self.examples.describe(i), "reference": ref, "answer": ans}
                    for i, ref, ans in list(zip(scored, references, answers, strict=True))[
                        :SHOWN_ANSWERS
                    ]
                ],
            },
        }

    def predictions(self, outputs: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
        """Each validation row with its answer's loss per token: the hardest rows first
        are where the model has most to learn (or the data is odd)."""
        out = []
        for position, row in enumerate(np.asarray(rows).tolist()):
            nll, count = outputs[position]
            out.append(
                {
                    "index": int(row),
                    **self.examples.describe(row),
                    "reference": self.examples.labels[row][:500],
                    "loss": round(float(nll / max(count, 1.0)), 4),
                }
            )
        return out

    def finish(self, model: Any) -> dict[str, Any]:
        return {}


class Generation:
    name = NAME
    title = "Generation — a response per prompt"
    noun = "language model"
    scores = (
        ("loss", "loss"),
        ("perplexity", "perplexity"),
        ("exact_match", "exact match"),
        ("rouge_l", "ROUGE-L"),
        ("chrf", "chrF"),
    )
    not_offered = NOT_OFFERED

    def headline(self, params: TrainParams | dict[str, Any]) -> Headline:
        return HEADLINE

    def curves(self, params: TrainParams | dict[str, Any]) -> list[tuple[str, str]]:
        return [("perplexity", "perplexity"), ("sample_rouge_l", "ROUGE-L of the samples")]

    def reading_snippet(self) -> str:
        return ""  # the loading snippet already generates an answer

    def encode(self, labels: list[Any], label_names: list[str]) -> list[Any]:
        return list(labels)

    def split(self, labels: list[Any], label_names: list[str], **fractions: Any) -> Split:
        """A seeded random split (one stratum: answers have no classes)."""
        return stratified_split(["all"] * len(labels), **fractions)

    def bind(
        self, examples: Any, label_names: list[str], train_idx: list[int], params: TrainParams
    ) -> GenerationJob:
        return GenerationJob(examples)

    def check_labels(self, labels: list[Any], label_names: list[str]) -> None:
        if label_names:
            raise ValueError("generation has no label names: the answers are the targets")
        if any(not isinstance(answer, str) for answer in labels):
            raise ValueError("every conversation must end with an assistant answer (text)")

    def answer(self, outputs: Any, labels: list[str], config: dict) -> dict[str, Any]:
        return {"text": str(outputs)}

    def csv_header(self, labels: list[str]) -> list[str]:
        return ["response", "error"]

    def csv_rows(self, outputs: Any, labels: list[str], config: dict) -> list[list[Any]]:
        return [[str(outputs), ""]]


TASK = Generation()

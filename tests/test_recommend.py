"""The Auto rule, case by case: each branch, its thresholds and the probe's effect."""

from __future__ import annotations

import pytest

from app.jobs.recommend import recommend
from app.jobs.strategies import Strategy

MINILM = 22_700_000


def pick(**overrides: object):
    args = dict(
        train_rows=1500,
        min_per_class=300,
        num_classes=5,
        model_parameters=MINILM,
        on_gpu=False,
        probe_score=None,
    )
    args.update(overrides)
    return recommend(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train_rows": 120, "min_per_class": 40}, Strategy.transfer_frozen),
        ({"min_per_class": 19}, Strategy.transfer_frozen),
        ({"train_rows": 299}, Strategy.transfer_frozen),
        ({}, Strategy.lp_ft),
        ({"train_rows": 2999}, Strategy.lp_ft),
        ({"train_rows": 3000}, Strategy.finetune_full),
        ({"model_parameters": 110_000_000}, Strategy.transfer_top_k),
        ({"model_parameters": 110_000_000, "on_gpu": True}, Strategy.lp_ft),
        ({"model_parameters": 350_000_000, "on_gpu": True}, Strategy.finetune_lora),
        ({"probe_score": 0.96}, Strategy.transfer_frozen),
        ({"probe_score": 0.94}, Strategy.lp_ft),
        ({"train_rows": 9000, "probe_score": 0.97}, Strategy.transfer_frozen),
    ],
)
def test_rule(overrides: dict, expected: Strategy) -> None:
    assert pick(**overrides).strategy is expected


def test_reason_is_one_sentence_with_the_numbers() -> None:
    small = pick(train_rows=120, min_per_class=12)
    assert "120" in small.reason and "12" in small.reason and not small.wants_probe
    probed = pick(probe_score=0.962)
    assert "96.2%" in probed.reason and not probed.wants_probe
    assert pick().wants_probe  # a mid-sized set is where the probe can change the answer
    assert pick(probe_score=0.5).reason.endswith("room to improve).")


SMOLLM2 = 134_515_008


def generation(**overrides: object):
    args = dict(
        train_rows=5000,
        min_per_class=5000,
        num_classes=0,
        model_parameters=SMOLLM2,
        on_gpu=False,
        task="generation",
    )
    args.update(overrides)
    return recommend(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train_rows": 800}, Strategy.finetune_lora),  # few conversations, whatever else
        (
            {"train_rows": 800, "on_gpu": True, "model_parameters": 30_000_000},
            Strategy.finetune_lora,
        ),
        ({}, Strategy.finetune_lora),  # a 135M model on a CPU
        ({"model_parameters": 40_000_000}, Strategy.transfer_top_k),  # small model, CPU
        ({"on_gpu": True}, Strategy.finetune_full),  # small model, many rows, GPU
        ({"on_gpu": True, "model_parameters": 1_700_000_000}, Strategy.finetune_lora),
        ({"model_parameters": None, "on_gpu": True}, Strategy.finetune_lora),  # a Hub id
    ],
)
def test_generation_rule(overrides: dict, expected: Strategy) -> None:
    assert generation(**overrides).strategy is expected


def test_generation_never_probes_nor_picks_a_frozen_head() -> None:
    cases = [
        generation(train_rows=rows, model_parameters=size, on_gpu=gpu)
        for rows in (10, 299, 2000, 50_000)
        for size in (None, 1_000_000, SMOLLM2, 7_000_000_000)
        for gpu in (False, True)
    ]
    assert {c.strategy for c in cases} <= {
        Strategy.finetune_lora,
        Strategy.finetune_full,
        Strategy.transfer_top_k,
    }
    assert not any(c.wants_probe for c in cases)


def test_generation_reasons_speak_of_conversations_and_size() -> None:
    few = generation(train_rows=800)
    assert "800 training conversations" in few.reason and "LoRA" in few.reason
    assert "135M-parameter" in generation().reason and "CPU" in generation().reason
    full = generation(on_gpu=True)
    assert "5000 training conversations" in full.reason and "GPU" in full.reason

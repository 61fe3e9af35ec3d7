"""The generator answers as the downloaded folder does: a tiny Llama with the packaged
SmolLM2 tokenizer, saved as an export, streamed greedily gives exactly what
`model.generate(do_sample=False)` gives; it stops at the chat's end token, samples, batches,
refuses bad questions with what to send, and a stream closed early or failing never hangs."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from tests.chat_data import make_tiny_causal_lm
from worker.training.chat_request import ChatRefused, Sampling, conversation_of
from worker.training.chat_tokens import stop_token_ids
from worker.training.generator import AnswerStream, Generator, load_generator

QUESTION = [{"role": "user", "content": "Name three colours, please."}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_tiny_causal_lm(tmp_path_factory.mktemp("export") / "model", tied=False))


@pytest.fixture(scope="module")
def generator(folder: Path) -> Generator:
    return load_generator(folder)


def _reference(folder: Path, conversation: list[dict[str, str]], max_new_tokens: int) -> str:
    """What greedy `model.generate` gives from the downloaded folder, checked against what
    the model card's lines (the text-generation pipeline) give."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    text = str(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    chat = pipeline("text-generation", model=model, tokenizer=tokenizer)
    card = chat(conversation, max_new_tokens=max_new_tokens, do_sample=False)
    assert card[0]["generated_text"][-1]["content"] == text
    return text


def test_greedy_stream_is_what_generate_gives_from_the_folder(
    folder: Path, generator: Generator
) -> None:
    stream = generator.stream(QUESTION, max_new_tokens=24, temperature=0)
    pieces = list(stream)
    assert len(pieces) > 5  # streamed as it was made, not at the end
    assert "".join(pieces) == stream.text == _reference(folder, QUESTION, 24)
    assert stream.finish_reason == "length" and stream.tokens == 24
    assert generator.answer(QUESTION, max_new_tokens=24, temperature=0) == stream.text
    chat = [
        *QUESTION,
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "More?"},
    ]
    assert generator.answer(chat, max_new_tokens=9, temperature=0) == _reference(folder, chat, 9)


def test_an_answer_ends_at_the_chat_end_token(generator: Generator) -> None:
    assert stop_token_ids(generator.tokenizer) == [2]  # <|im_end|>, which closes ChatML turns
    # A model whose config says its next greedy token ends answers stops there, at once.
    first = generator.tokenizer.encode(generator.answer(QUESTION, max_new_tokens=1, temperature=0))
    model = generator.model
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [2, first[0]]
    try:
        stopping = Generator(model, generator.tokenizer)
        stream = stopping.stream(QUESTION, max_new_tokens=20, temperature=0)
        assert list(stream) == [] and stream.text == ""
        assert stream.finish_reason == "stop" and stream.tokens == 0
    finally:
        model.generation_config.eos_token_id = saved


def test_sampling_draws_different_answers(generator: Generator) -> None:
    torch.manual_seed(1)
    one = generator.answer(QUESTION, max_new_tokens=12, temperature=1.0, top_p=0.95)
    torch.manual_seed(2)
    two = generator.answer(QUESTION, max_new_tokens=12, temperature=1.0, top_p=0.95)
    assert one and two and one != two
    assert generator.generate_kwargs(Sampling(5, 0.7, 0.9), 10)["top_k"] == 0  # only what was set


def test_batched_answers_match_single_ones(generator: Generator) -> None:
    chats = [
        QUESTION,
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief and kind."}, *QUESTION],
    ]
    single = [generator.answer(c, max_new_tokens=10, temperature=0) for c in chats]
    assert generator.answers(chats, max_new_tokens=10, temperature=0, batch_size=2) == single
    assert len(set(single)) == 3


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"max_new_tokens": 0}, "from 1 to 1024"),
        ({"max_new_tokens": 1025}, "from 1 to 1024"),
        ({"max_new_tokens": 2.5}, "whole number"),
        ({"max_new_tokens": True}, "must be a number"),
        ({"temperature": -0.1}, "from 0 (greedy"),
        ({"temperature": 2.5}, "to 2"),
        ({"temperature": math.nan}, "must be a number"),
        ({"top_p": 0}, "above 0"),
        ({"top_p": 1.01}, "at most 1"),
    ],
)
def test_settings_out_of_range_are_refused(generator: Generator, settings: dict, says: str) -> None:
    with pytest.raises(ChatRefused, match=says.replace("(", r"\(")):
        generator.stream(QUESTION, **settings)


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "user"}], 'exactly "role" and "content"'),
        ([{"role": "robot", "content": "x"}], "role must be one of"),
        ([{"role": "user", "content": 3}], "content must be text"),
        ([{"role": "user", "content": "half \ud800"}], "half a character"),
        ([*QUESTION, {"role": "system", "content": "x"}, *QUESTION], "may only come first"),
        ([*QUESTION, {"role": "assistant", "content": "Red."}], "last message must be the user"),
        ([{"role": "user", "content": "x" * 20_001}], "over 20,000 characters"),
    ],
)
def test_malformed_conversations_are_refused(
    generator: Generator, messages: object, says: str
) -> None:
    with pytest.raises(ChatRefused, match=says):
        generator.stream(messages)  # type: ignore[arg-type]


def test_prompt_or_messages_exactly_one() -> None:
    assert conversation_of("Hi", system="Be kind.") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    for bad in ({}, {"prompt": "Hi", "messages": QUESTION}):
        with pytest.raises(ChatRefused, match="either"):
            conversation_of(**bad)
    with pytest.raises(ChatRefused, match="something to answer"):
        conversation_of("  ")


def test_an_answer_stops_at_the_context_and_a_prompt_past_it_is_refused(
    generator: Generator,
) -> None:
    prompt_length = len(generator.prompt_ids(QUESTION))
    context = generator.context
    generator.context = prompt_length + 3
    try:
        stream = generator.stream(QUESTION, max_new_tokens=30, temperature=0)
        list(stream)
        assert stream.tokens == 3 and stream.finish_reason == "length"
        generator.context = prompt_length
        with pytest.raises(ChatRefused, match=f"reads at most {prompt_length}"):
            generator.stream(QUESTION)
    finally:
        generator.context = context


def _generating() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "generate"]


def test_a_stream_closed_early_stops_generating(generator: Generator) -> None:
    stream = generator.stream(QUESTION, max_new_tokens=1024, temperature=0)
    assert next(stream)
    stream.close()
    assert not _generating()


def test_a_failing_generation_raises_instead_of_hanging(generator: Generator) -> None:
    out_of_vocabulary = [len(generator.tokenizer) + 10]
    with pytest.raises(IndexError):
        list(AnswerStream(generator, out_of_vocabulary, Sampling(5, 0, 1)))
    assert not _generating()

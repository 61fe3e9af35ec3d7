"""What a question to a generation model may be: a conversation and the sampling settings.

Torch-free, so the web checks a question with the very rules the predict worker's generator
(generator.py) applies: a bad one is refused with what to send instead, before anything is
queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Conversation = list[dict[str, str]]  # {"role": system | user | assistant, "content": …}

ROLES = ("system", "user", "assistant")
MAX_NEW_TOKENS = 1024  # per answer; a 135M model on a CPU makes about 30 tokens a second
MAX_TEMPERATURE = 2.0  # past it, sampling is noise
MAX_MESSAGES = 200
MAX_CHAT_CHARS = 20_000  # all the messages' contents together

# The playground's defaults: varied but on-topic answers. Temperature 0 is greedy decoding.
DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9


class ChatRefused(ValueError):
    """The question cannot be asked; the message says what to send instead."""


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChatRefused(f"{name} must be a number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Sampling:
    """How an answer is drawn. temperature 0 is greedy decoding: always the likeliest next
    token, so the answer is exactly what `model.generate(do_sample=False)` gives from the
    downloaded folder. Otherwise tokens are sampled at `temperature` from the smallest set
    of likeliest tokens whose probabilities reach `top_p`."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P

    def __post_init__(self) -> None:
        tokens = _number("max_new_tokens", self.max_new_tokens)
        if tokens != int(tokens) or not 1 <= tokens <= MAX_NEW_TOKENS:
            raise ChatRefused(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}")
        if not 0 <= _number("temperature", self.temperature) <= MAX_TEMPERATURE:
            raise ChatRefused(
                f"temperature must be from 0 (greedy: the likeliest token each time) to "
                f"{MAX_TEMPERATURE:g}"
            )
        if not 0 < _number("top_p", self.top_p) <= 1:
            raise ChatRefused("top_p must be above 0 and at most 1 (1: no cut)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": int(self.max_new_tokens),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
        }


def checked_conversation(messages: Any) -> Conversation:
    """`messages` as a conversation the model can answer: a list of {"role", "content"}
    objects, roles system (first only), user or assistant, ending with the user's turn."""
    if not isinstance(messages, list) or not messages:
        raise ChatRefused(
            'messages must be a non-empty list of {"role": "user", "content": "..."} objects'
        )
    if len(messages) > MAX_MESSAGES:
        raise ChatRefused(f"a conversation may hold at most {MAX_MESSAGES} messages")
    out: Conversation = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ChatRefused(
                f'message {i} must be an object with exactly "role" and "content", '
                f'like {{"role": "user", "content": "..."}}'
            )
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ChatRefused(f"message {i}: role must be one of {', '.join(ROLES)}, not {role!r}")
        if role == "system" and i != 0:
            raise ChatRefused(f"message {i}: a system message may only come first")
        if not isinstance(content, str):
            raise ChatRefused(f"message {i}: content must be text")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:  # JSON's "\ud800" escape: not text, and unstorable
            raise ChatRefused(
                f"message {i} holds half a character (a lone surrogate such as \\ud800); "
                "send the character itself"
            ) from None
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user" or not out[-1]["content"].strip():
        raise ChatRefused("the last message must be the user's, with a question to answer")
    if sum(len(m["content"]) for m in out) > MAX_CHAT_CHARS:
        raise ChatRefused(
            f"the conversation is over {MAX_CHAT_CHARS:,} characters; start a shorter one"
        )
    return out


def conversation_of(
    prompt: str | None = None, messages: Any = None, system: str | None = None
) -> Conversation:
    """The conversation a question asks: a `prompt` (one user message, after an optional
    `system` message) or the `messages` themselves; exactly one of the two."""
    if (prompt is None) == (messages is None):
        raise ChatRefused(
            'send either "prompt" (a text) or "messages" (a list of {"role", "content"} '
            "objects ending with the user's), not both and not neither"
        )
    if messages is not None:
        if system is not None:
            raise ChatRefused('with "messages", put the system prompt in them as the first')
        return checked_conversation(messages)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ChatRefused("prompt must be a text with something to answer")
    turns = [{"role": "system", "content": system}] if system and system.strip() else []
    return checked_conversation([*turns, {"role": "user", "content": prompt}])

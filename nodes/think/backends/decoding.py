"""Decoding levers for the in-process model (llama.cpp logits processors), against the small model's two worst
habits: copying the person's last message, and talking like an assistant ("As an AI ...").

* ``CopyBlocker``: once the reply's last ``n - 1`` tokens repeat ``n - 1`` consecutive tokens of the person's
  message, the token that would continue the copy is pushed down by ``penalty`` (so "What should I cook" cannot
  run on into "for dinner tonight?"; a name or a short shared phrase stays possible). llama.cpp's own
  repeat penalty also hits every word the reply legitimately shares with the message; this hits only copying.
* ``break_token_bias``: a negative bias on the tokens that open a character break (" AI", " ИИ", " artificial").

Server backends (Ollama, OpenAI-compatible) cannot run a logits processor; the reply guard covers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

BREAK_WORDS = (" AI", "AI", " ИИ", "ИИ", " artificial", " Artificial", " искусственный", " OpenAI", " Qwen",
               " Alibaba")


class CopyBlocker:
    """A llama.cpp logits processor: ``(input_ids, scores) -> scores``."""

    def __init__(self, tokenize: Callable[[str], Sequence[int]], message: str, n: int = 4, penalty: float = 12.0):
        self.n = n
        self.penalty = penalty
        self.next_tokens: dict[tuple[int, ...], set[int]] = {}
        for variant in {message.strip(), " " + message.strip()}:
            tokens = list(tokenize(variant))
            for i in range(len(tokens) - n + 1):
                self.next_tokens.setdefault(tuple(tokens[i:i + n - 1]), set()).add(tokens[i + n - 1])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if len(input_ids) < self.n - 1 or not self.next_tokens:
            return scores
        blocked = self.next_tokens.get(tuple(int(t) for t in input_ids[-(self.n - 1):]))
        if blocked:
            for token in blocked:
                scores[token] -= self.penalty
        return scores


def break_token_bias(tokenize: Callable[[str], Sequence[int]], bias: float = -6.0,
                     words: Sequence[str] = BREAK_WORDS) -> dict[int, float]:
    """{token id: bias} for the words of ``words`` that are one token each (longer ones would bias common
    word pieces)."""
    out: dict[int, float] = {}
    for word in words:
        tokens = list(tokenize(word))
        if len(tokens) == 1:
            out[tokens[0]] = bias
    return out


class BiasProcessor:
    """A fixed per-token bias as a logits processor (llama-cpp-python drops a logits processor passed together with
    its own ``logit_bias``, so both go in one list)."""

    def __init__(self, bias: dict[int, float]):
        self.bias = bias

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for token, value in self.bias.items():
            scores[token] += value
        return scores

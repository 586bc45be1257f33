"""A word-level tokenizer for the builtin copy model, trained on the shop's own text.

Text is split into words (letters and digits, with inner hyphens and apostrophes:
"slip-on", "don't"), placeholders (``{product}``, ``{price}``, ``{category}``, ``{brand}``)
and single punctuation marks. A token that follows whitespace carries a leading ``▁``, so
``decode(encode(text))`` gives the text back with its whitespace normalised. Control tokens
(``<seg:KEY>``, ``<cat:KEY>``, ``<slot:KEY>``, ``<field:NAME>``) condition the model and are
never written into copy.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from aigc_django.generation.briefs import PLACEHOLDERS

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
SPACE = "▁"
ANY = "any"
EVERYONE = "everyone"
PREFIX_LENGTH = 5

_WORD = r"[^\W_]+(?:['\u2019\-][^\W_]+)*"
_PIECE = re.compile(
    r"\s*(?:" + "|".join(re.escape(p) for p in PLACEHOLDERS) + "|" + _WORD + r"|\S)"
)


def control(kind: str, key: str) -> str:
    """The control token of one condition, e.g. ``control("seg", "sporty")``."""
    return f"<{kind}:{key}>"


def pieces(text: str) -> list[str]:
    """Split text into tokens, marking those that follow whitespace with ``▁``."""
    out = []
    for match in _PIECE.finditer(text.strip()):
        piece = match.group(0)
        stripped = piece.lstrip()
        out.append(SPACE + stripped if len(stripped) < len(piece) else stripped)
    return out


def is_placeholder(token: str) -> bool:
    return token.lstrip(SPACE) in PLACEHOLDERS


class Tokenizer:
    """Maps tokens to ids and back. Build one with :meth:`train`."""

    def __init__(self, tokens: list[str]) -> None:
        if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError("a tokenizer's first tokens must be the special tokens")
        self.tokens = list(tokens)
        self.ids = {token: index for index, token in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("a tokenizer's tokens must be unique")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.ids[t] for t in SPECIALS)

    @classmethod
    def train(
        cls, texts: Iterable[str], controls: Iterable[str] = (), min_count: int = 1
    ) -> Tokenizer:
        """A vocabulary of every token seen at least ``min_count`` times, plus the controls
        and every placeholder (with and without a leading space)."""
        counts = Counter(token for text in texts for token in pieces(text))
        fixed = list(SPECIALS) + sorted(set(controls))
        fixed += [p for placeholder in PLACEHOLDERS for p in (placeholder, SPACE + placeholder)]
        seen = set(fixed)
        words = sorted(
            (t for t, n in counts.items() if n >= min_count and t not in seen),
            key=lambda t: (-counts[t], t),
        )
        return cls(fixed + words)

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.ids.get(token, self.unk_id)

    def has(self, token: str) -> bool:
        return token in self.ids

    def encode(self, text: str) -> list[int]:
        return [self.id(token) for token in pieces(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids up to the first ``<eos>``, leaving out special and control tokens."""
        out = []
        for index in ids:
            index = int(index)
            if index == self.eos_id:
                break
            token = self.tokens[index]
            if token in SPECIALS or self.is_control(token):
                continue
            out.append(token.replace(SPACE, " "))
        return "".join(out).strip()

    @staticmethod
    def is_control(token: str) -> bool:
        return token.startswith("<") and token.endswith(">") and ":" in token

    def prefix(self, segment: str, category: str, slot: str, field: str) -> list[int]:
        """``<bos>`` and the control tokens of one condition; unknown keys read as "any"
        (a segment the model has not seen as ``everyone``)."""
        wanted = [("seg", segment, EVERYONE), ("cat", category, ANY), ("slot", slot, ANY)]
        wanted.append(("field", field, ANY))
        ids = [self.bos_id]
        for kind, key, fallback in wanted:
            token = control(kind, key)
            ids.append(self.ids[token] if token in self.ids else self.id(control(kind, fallback)))
        return ids

    def control_ids(self) -> list[int]:
        """Ids of tokens the model must never write: specials (but ``<eos>``) and controls."""
        return [
            i
            for i, t in enumerate(self.tokens)
            if (t in SPECIALS and t != EOS) or self.is_control(t)
        ]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"tokens": self.tokens}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        return cls(json.loads(path.read_text())["tokens"])

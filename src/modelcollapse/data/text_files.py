"""Real text: corpora split by document, tokenised, and cut into fixed-size blocks.

A :class:`TextDataset` is an empirical distribution over blocks of ``block_size`` token
ids, like the paper's 64-token wikitext-2 blocks. Sources, offline by default:

* ``wiki`` (default): ~3 MB of English Wikipedia prose (106 articles) in gensim's test data;
* ``lee``: the Lee news corpus in gensim's test data (one article a line);
* ``pydoc``: Python's own topic help (always present, no extra package);
* ``path``: a local ``.txt`` file (documents separated by blank lines) or a folder of them;
* ``wikitext``: ``wikitext-2-raw-v1`` through Hugging Face ``datasets`` (needs a hub).
"""

from __future__ import annotations

import bz2
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError
from .tokenizers import make_tokenizer


@dataclass
class TextDataset:
    name: str
    source: str
    tokenizer: Any  # WordTokenizer | BPETokenizer | PretrainedTokenizer: encode, decode, vocab_size, EOS
    train_blocks: np.ndarray  # (N, block_size) int64 token ids
    val_blocks: np.ndarray
    test_blocks: np.ndarray
    token_counts: np.ndarray  # (vocab_size,) counts in the training split
    data_type: ClassVar[str] = "text"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def block_size(self) -> int:
        return self.train_blocks.shape[1]

    @property
    def heldout(self) -> np.ndarray:
        return self.test_blocks

    def rare_tokens(self, share: float = 0.10) -> np.ndarray:
        """Ids of the rarest training tokens that together hold at most ``share`` of the tokens."""
        order = np.argsort(self.token_counts, kind="stable")
        order = order[self.token_counts[order] > 0]
        mass = np.cumsum(self.token_counts[order]) / self.token_counts.sum()
        return order[mass <= share]

    def sample(self, n: int, *, rng: Any) -> np.ndarray:
        """``n`` distinct training blocks per generator; stacked for a list of generators."""
        if n > len(self.train_blocks):
            raise DataError(f"cannot draw {n} distinct blocks from the {len(self.train_blocks)} training blocks of {self.name}")
        if isinstance(rng, np.random.Generator):
            return self.train_blocks[rng.choice(len(self.train_blocks), size=n, replace=False)]
        return np.stack([self.train_blocks[g.choice(len(self.train_blocks), size=n, replace=False)] for g in rng])

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "vocab_size": self.vocab_size,
                "block_size": self.block_size, "train_blocks": int(len(self.train_blocks)),
                "val_blocks": int(len(self.val_blocks)), "test_blocks": int(len(self.test_blocks)),
                "train_tokens": int(self.token_counts.sum())}


# -- corpora -----------------------------------------------------------------------------
def _gensim_file(name: str) -> Path:
    found = importlib.util.find_spec("gensim")
    if found is None or not found.submodule_search_locations:
        raise DataError("data.source='wiki' and 'lee' read gensim's test data: pip install 'modelcollapse[text]'")
    return Path(found.submodule_search_locations[0]) / "test" / "test_data" / name


def wiki_docs() -> list[str]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = _gensim_file("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    with bz2.open(path) as fh:
        return [filter_wiki(text) for _, text, _ in extract_pages(fh) if not text.lstrip().lower().startswith("#redirect")]


def corpus(spec: Any) -> tuple[list[str], str]:
    """The documents of a source, and a one-line description of where they came from."""
    if spec.source == "wiki":
        return wiki_docs(), "gensim test data: English Wikipedia articles"
    if spec.source == "lee":
        return _gensim_file("lee_background.cor").read_text(errors="replace").splitlines(), "gensim test data: Lee news corpus"
    if spec.source == "pydoc":
        from pydoc_data.topics import topics

        return [topics[k] for k in sorted(topics)], "Python's pydoc_data topics"
    if spec.source == "path":
        return _local_docs(Path(spec.path)), f"local text in {spec.path}"
    raise AssertionError("wikitext has its own splits: see load_text")


def _local_docs(path: Path) -> list[str]:
    files = sorted(path.glob("**/*.txt")) if path.is_dir() else [path]
    docs = []
    for f in files:
        docs += [d for d in re.split(r"\n\s*\n", f.read_text(errors="replace")) if d.strip()]
    return docs


def _wikitext_splits() -> list[list[str]]:  # pragma: no cover - needs a model hub
    """wikitext-2-raw-v1's own train/validation/test splits, each as one running text (as the paper blocks it)."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError("data.source='wikitext' needs Hugging Face datasets and a hub: pip install 'modelcollapse[paper]'") from None
    try:
        ds = load_dataset("wikitext", "wikitext-2-raw-v1")
    except Exception as exc:  # offline: datasets raises several kinds; all mean "not reachable"
        raise DataError(f"data.source='wikitext' could not be loaded ({type(exc).__name__}: {exc}); offline, "
                        "use source 'wiki' (Wikipedia prose shipped in gensim)") from None
    return [["".join(ds[split]["text"])] for split in ("train", "validation", "test")]


def load_text(spec: Any) -> TextDataset:
    """Split documents (80/10/10, fixed by ``split_seed``), tokenise, and cut into blocks."""
    if spec.source == "wikitext":  # pragma: no cover - needs a model hub
        parts = _wikitext_splits()
        tok = make_tokenizer(spec.tokenizer, parts[0])
        blocks = [_blocks(p, tok, spec.block_size) for p in parts]
        counts = np.bincount(blocks[0].ravel(), minlength=tok.vocab_size)
        return TextDataset("text:wikitext", "wikitext-2-raw-v1 (Hugging Face datasets)", tok, *blocks, counts)
    docs, source = corpus(spec)
    docs = [d for d in docs if d.strip()]
    if len(docs) < 3:
        raise DataError(f"data.source={spec.source!r}: the corpus has {len(docs)} non-empty documents; need at least 3")
    order = np.random.default_rng(spec.split_seed).permutation(len(docs))
    n_val = n_test = max(1, int(round(0.1 * len(docs))))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    tok = make_tokenizer(spec.tokenizer, [docs[i] for i in train])
    blocks = [_blocks([docs[i] for i in part], tok, spec.block_size) for part in (train, val, test)]
    for name, b in zip(("training", "validation", "test"), blocks):
        if len(b) == 0:
            raise DataError(f"data.block_size={spec.block_size}: the {name} split has too few tokens for one block")
    counts = np.bincount(blocks[0].ravel(), minlength=tok.vocab_size)
    return TextDataset(f"text:{spec.source}", source, tok, *blocks, counts)


def _blocks(docs: list[str], tok: Any, size: int) -> np.ndarray:
    stream: list[int] = []
    for doc in docs:
        stream += tok.encode(doc) + [tok.EOS]
    n = len(stream) // size
    return np.asarray(stream[: n * size], dtype=np.int64).reshape(n, size)

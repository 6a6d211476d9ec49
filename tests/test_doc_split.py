"""Train/test split by document: on a corpus of known documents read through the real corpus
reader, no held-out window shares a document with a window the explainer may see."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from interp.collect.config import CorpusConfig
from interp.collect.corpus import token_stream
from interp.collect.documents import DOCUMENTS, read_doc_starts, write_documents
from interp.collect.shards import ActivationShards
from interp.explain.stage import select_latents
from interp.mine.config import MineConfig
from interp.mine.doc_split import (
    TEST,
    TRAIN,
    check_split,
    held_out_documents,
    warn_if_lopsided,
    window_splits,
)
from interp.mine.examples import Example
from interp.mine.stage import mine_into
from interp.scoring.base import unscorable_reason
from tests.builders import TinyTopK

SEQ_LEN, WINDOW, D = 17, 4, 8


class WordTokenizer:
    """One token per whitespace-separated word (ids from a growing vocabulary); BOS 1, EOS 2."""

    bos_token_id, eos_token_id = 1, 2

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.words = {1: "<bos>", 2: "<eos>"}

    def __call__(self, text, add_special_tokens=False):
        ids = [self.vocab.setdefault(w, len(self.vocab) + 3) for w in text.split()]
        self.words.update({i: w for w, i in self.vocab.items()})
        return {"input_ids": ids}


def _corpus(tmp_path, n_docs: int = 24) -> tuple[CorpusConfig, WordTokenizer, torch.Tensor, torch.Tensor]:
    """Documents 'd<k>w<i> ...' of 5 to 40 words, blank-line separated, through the reader."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 41, (n_docs,), generator=gen).tolist()
    text = "\n\n".join(" ".join(f"d{k}w{i}" for i in range(n)) for k, n in enumerate(lengths))
    (tmp_path / "docs.txt").write_text(text + "\n")
    n_tokens = (sum(lengths) + n_docs) // (SEQ_LEN - 1) * (SEQ_LEN - 1)   # the last doc may be cut
    cfg = CorpusConfig(source=str(tmp_path / "docs.txt"), n_tokens=n_tokens, seq_len=SEQ_LEN, seed=3)
    tok = WordTokenizer()
    seqs, starts = token_stream(cfg, tok)
    return cfg, tok, seqs, starts


def _labels(tok: WordTokenizer, seqs: torch.Tensor) -> list[str]:
    """The source document ('d<k>') of every body token, from the text alone: a word names its
    document, an EOS belongs to the word before it."""
    out: list[str] = []
    for t in seqs[:, 1:].reshape(-1).tolist():
        out.append(out[-1] if t == 2 else tok.words[t].split("w")[0])
    return out


def _collect(path, tok, seqs, starts, tied: dict[int, str]) -> ActivationShards:
    """A collect artifact of the stream: each token's activation is its word's random vector,
    dims 0/1 zero except on tokens of the documents tied[0] / tied[1] (doc-specific latents)."""
    path.mkdir()
    labels = _labels(tok, seqs)
    emb = torch.randn(max(tok.words) + 1, D, generator=torch.Generator().manual_seed(1))
    emb[:, :2] = 0
    acts = emb[seqs]
    body = acts[:, 1:].reshape(-1, D)
    for dim, doc in tied.items():
        body[[i for i, lab in enumerate(labels) if lab == doc], dim] = 6.0
    acts[:, 1:] = body.view(len(seqs), SEQ_LEN - 1, D)
    save_file({"acts": acts.contiguous(), "tokens": seqs.int().contiguous()},
              str(path / "shard-00000.safetensors"))
    pq.write_table(pa.table({"seq_id": list(range(len(seqs))), "tokens": seqs.tolist(),
                             "token_str": [[tok.words[t] for t in row] for row in seqs.tolist()]}),
                   path / "sequences.parquet")
    write_documents(starts, seqs[:, 1:].numel(), path)
    (path / "manifest.json").write_text(json.dumps({
        "d_model": D, "seq_len": SEQ_LEN, "n_sequences": len(seqs), "hookpoint": "h",
        "shards": [{"file": "shard-00000.safetensors", "first_seq": 0, "n_seq": len(seqs)}]}))
    return ActivationShards(path)


def _encoder() -> TinyTopK:
    enc = TinyTopK(d=D, m=10, k=3, seed=4)
    enc.W[:2] = 0                      # only latents 0 and 1 read dims 0 and 1
    enc.W[:, :2] = 0
    enc.W[0, 0] = enc.W[1, 1] = 3.0
    enc.W_dec = torch.randn(10, D, generator=torch.Generator().manual_seed(5))
    return enc


def _window_docs(row, labels) -> set[str]:
    first = row["seq_id"] * (SEQ_LEN - 1) + row["start"] - 1
    return set(labels[first:first + WINDOW])


@pytest.mark.parametrize("negatives", ["random", "neighbours"])
def test_no_held_out_window_shares_a_document_with_a_training_window(tmp_path, negatives):
    cfg, tok, seqs, starts = _corpus(tmp_path)
    labels = _labels(tok, seqs)
    assert len(starts) == len(set(labels)) == 24        # the reader kept the documents apart
    held = held_out_documents(starts, len(labels), 0.5, seed=0)
    # Tie latent 0 to a train document and latent 1 to a held-out one.
    doc_label = [labels[int(s)] for s in starts]
    tied = {0: doc_label[int((~held).nonzero()[0])], 1: doc_label[int(held.nonzero()[0])]}
    shards = _collect(tmp_path / "c", tok, seqs, starts, tied)
    mcfg = MineConfig(window=WINDOW, n_top=4, n_quantiles=2, per_quantile=3, train_per_quantile=2,
                      n_random=6, negatives=negatives, n_hard=4, n_neighbours=3)
    (tmp_path / "m").mkdir()
    stats = mine_into(_encoder(), shards, mcfg, tmp_path / "m")
    rows = pq.read_table(tmp_path / "m" / "examples.parquet").to_pylist()
    assert stats["n_documents"] == 24 and 0 < stats["n_test_documents"] < 24
    train_docs = set().union(*(_window_docs(r, labels) for r in rows if r["split"] == "train"))
    test_docs = set().union(*(_window_docs(r, labels) for r in rows if r["split"] == "test"))
    assert train_docs and test_docs and not train_docs & test_docs
    for l in range(10):
        mine = [r for r in rows if r["latent"] == l]
        shown = set().union(*(_window_docs(r, labels) for r in mine if r["split"] == "train"))
        held_out = set().union(*(_window_docs(r, labels) for r in mine if r["split"] == "test"))
        assert not shown & held_out, l
    # Negatives: one row per (latent, window) across kinds and splits.
    neg = [(r["latent"], r["seq_id"], r["start"]) for r in rows if r["kind"] in ("random", "hard")]
    assert len(neg) == len(set(neg)) and len(neg) > 10 * 4
    assert len({(r["latent"], r["seq_id"], r["start"]) for r in rows}) == len(rows)
    if negatives == "neighbours":
        assert {r["split"] for r in rows if r["kind"] == "hard"} == {"train", "test"}

    def examples(l: int) -> list[Example]:
        return [Example(l, r["kind"], r["split"], r["rank"], r["quantile"], r["seq_id"], r["start"],
                        r["max_act"], (), tuple(r["acts"])) for r in rows if r["latent"] == l]

    # Latent 0 fires only in a train document: shown to the explainer, unscorable on positives.
    assert any(r["kind"] == "top" for r in rows if r["latent"] == 0)
    assert unscorable_reason(("positives", "negatives"), examples(0)) is not None
    # Latent 1 fires only in a held-out document: nothing to explain from, held-out positives only.
    assert not any(r["max_act"] > 0 and r["split"] == "train" for r in rows if r["latent"] == 1)
    assert unscorable_reason(("positives", "negatives"), examples(1)) is None
    # The explain stage picks latents it can both explain and score: neither of these two.
    pick = SimpleNamespace(explain=SimpleNamespace(min_examples=2, min_heldout=1, n_latents=None),
                           mine=SimpleNamespace(seed=0))
    eligible = select_latents(tmp_path / "m", pick)
    assert eligible and 0 not in eligible and 1 not in eligible
    for l in eligible:
        active = [r["split"] for r in rows if r["latent"] == l and r["max_act"] > 0]
        assert active.count("train") >= 2 and "test" in active


def _default_split(tokenizer) -> tuple[int, float, dict[int, float]]:
    """The embedded corpus at the default settings through the real reader: its documents, the
    share of them held out, and the share of windows in each split."""
    corpus, mine = CorpusConfig(), MineConfig()
    seqs, starts = token_stream(corpus, tokenizer)
    n_tokens = seqs[:, 1:].numel()
    held = held_out_documents(starts, n_tokens, mine.test_fraction, mine.seed)
    splits = window_splits(starts, held, n_tokens // mine.window, mine.window, "cpu")
    return len(starts), float(held.float().mean()), {s: float((splits == s).float().mean())
                                                     for s in (TRAIN, TEST)}


def test_the_default_corpus_splits_into_many_documents_on_each_side():
    """Issue 20: 32,768 tokens of whole articles were 7 documents, 1 for the explainer and 6
    held out. The first corpus.max_doc_tokens of each make it 64 (word tokens here)."""
    from tests.builders import WordTokenizer

    n_docs, held, windows = _default_split(WordTokenizer())
    assert n_docs >= 50
    assert 0.35 <= held <= 0.65
    assert windows[TRAIN] >= 0.35 and windows[TEST] >= 0.35


@pytest.mark.slow
def test_the_default_corpus_splits_with_the_subject_models_tokenizer(model_cache):
    from transformers import AutoTokenizer

    from interp.config import ModelConfig
    from interp.models import resolve_hf_source

    tok = AutoTokenizer.from_pretrained(resolve_hf_source(ModelConfig(cache_dir=str(model_cache)),
                                                          model_cache))
    n_docs, held, windows = _default_split(tok)
    assert n_docs >= 50
    assert 0.35 <= held <= 0.65
    assert windows[TRAIN] >= 0.35 and windows[TEST] >= 0.35


def test_held_out_documents_balance_tokens_and_follow_the_seed(caplog):
    sizes = torch.randint(1, 400, (300,), generator=torch.Generator().manual_seed(0))
    starts = torch.cumsum(sizes, 0) - sizes
    n = int(sizes.sum())
    for fraction in (0.2, 0.5):
        held = held_out_documents(starts, n, fraction, seed=0)
        share = float(sizes[held].sum()) / n
        assert abs(share - fraction) <= 400 / n                     # within one document
        assert torch.equal(held, held_out_documents(starts, n, fraction, seed=0))
    assert not torch.equal(held_out_documents(starts, n, 0.5, 0), held_out_documents(starts, n, 0.5, 1))
    warn_if_lopsided(held, 480, 520, 0.5)
    assert not caplog.text
    warn_if_lopsided(torch.tensor([True, False]), 6, 58, 0.5)   # two documents, one long
    assert "too few documents" in caplog.text


def test_a_split_with_an_empty_side_is_refused_naming_documents_and_tokens():
    starts, held, n = torch.tensor([0, 600]), torch.tensor([True, False]), 640
    check_split(starts, held, n, (torch.arange(10), torch.arange(150)), 0.5)  # both sides: fine
    with pytest.raises(ValueError, match=r"2 documents in the 640 tokens collected.*1 train \(40 "
                       r"tokens, 0 windows\) and 1 held out \(600 tokens, 150 windows\)"):
        check_split(starts, held, n, (torch.arange(0), torch.arange(150)), 0.5)


def test_mining_refuses_an_artifact_without_document_boundaries(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match=f"no {DOCUMENTS}.*delete that directory"):
        read_doc_starts(tmp_path / "c", 100)


def test_an_old_artifact_gets_its_document_table_back_from_its_corpus(tmp_path):
    """A collect artifact from before documents.parquet: its own corpus config re-read with the
    tokenizer gives the table back when it reproduces the stored tokens, and nothing otherwise."""
    from interp.collect.documents import backfill_documents

    cfg, tok, seqs, starts = _corpus(tmp_path)
    shards = _collect(tmp_path / "c", tok, seqs, starts, {})
    (shards.path / DOCUMENTS).unlink()
    manifest = json.loads((shards.path / "manifest.json").read_text())
    (shards.path / "manifest.json").write_text(json.dumps(manifest | {"corpus": cfg.model_dump(mode="json")}))
    assert backfill_documents(shards.path, tok)
    assert torch.equal(read_doc_starts(shards.path, shards.n_tokens), starts)
    assert not backfill_documents(shards.path, tok)               # already there: untouched
    (shards.path / DOCUMENTS).unlink()
    (tmp_path / "docs.txt").write_text("other text entirely\n" * 200)   # the corpus changed
    assert not backfill_documents(shards.path, tok)
    assert not (shards.path / DOCUMENTS).exists()


def test_an_old_artifact_of_documents_longer_than_max_doc_tokens_gets_its_table_back(tmp_path):
    """Collected before corpus.max_doc_tokens existed, i.e. from whole documents: its manifest's
    corpus has no max_doc_tokens, which means whole documents, not the default prefix."""
    from interp.collect.corpus import corpus_identity
    from interp.collect.documents import backfill_documents

    text = "\n\n".join(" ".join(f"d{k}w{i}" for i in range(600)) for k in range(3))
    (tmp_path / "docs.txt").write_text(text + "\n")
    cfg = CorpusConfig(source=str(tmp_path / "docs.txt"), n_tokens=1792, seq_len=SEQ_LEN,
                       max_doc_tokens=None)
    tok = WordTokenizer()
    seqs, starts = token_stream(cfg, tok)
    assert starts.tolist() == [0, 601, 1202]                       # three whole documents
    shards = _collect(tmp_path / "c", tok, seqs, starts, {})
    (shards.path / DOCUMENTS).unlink()
    manifest = json.loads((shards.path / "manifest.json").read_text())
    corpus = corpus_identity(cfg)
    assert "max_doc_tokens" not in corpus
    (shards.path / "manifest.json").write_text(json.dumps(manifest | {"corpus": corpus}))
    assert backfill_documents(shards.path, tok)
    assert torch.equal(read_doc_starts(shards.path, shards.n_tokens), starts)

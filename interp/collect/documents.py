"""The document table of a collect artifact: documents.parquet, where each document starts in the
token stream (BOS dropped; token t = seq_id * (seq_len-1) + position - 1), one row per document,
a few bytes each (10^4 rows for 10^7 tokens of Wikipedia). Collect writes it; mining reads it to
split train and test by document (interp/mine/doc_split.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from interp.artifacts import write_parquet_atomic

log = logging.getLogger(__name__)

DOCUMENTS = "documents.parquet"


def write_documents(doc_starts: torch.Tensor, n_tokens: int, out: Path) -> None:
    """documents.parquet: doc (stream order), start and n_tokens (of this stream) per document."""
    starts = doc_starts.long()
    ends = torch.cat([starts[1:], torch.tensor([n_tokens])]).clamp_max(n_tokens)
    write_parquet_atomic(pa.table({
        "doc": pa.array(torch.arange(len(starts)).int().numpy()),
        "start": pa.array(starts.numpy()),
        "n_tokens": pa.array((ends - starts).numpy())}), Path(out) / DOCUMENTS)


def backfill_documents(collect_dir: Path, tokenizer) -> bool:
    """Give a collect artifact from before documents.parquet existed its document table.

    Re-reads the artifact's own corpus config (from its manifest) with the subject model's
    tokenizer, and writes the table only when that reproduces the stored token sequences exactly,
    so a nightly home keeps its activations and SAE instead of collecting again. Returns whether
    it wrote one; a corpus that changed since (or a tokenizer that differs) leaves the artifact
    as it is, and read_doc_starts then says what to do.
    """
    import json

    from interp.collect.config import CorpusConfig
    from interp.collect.corpus import token_stream

    collect_dir = Path(collect_dir)
    if (collect_dir / DOCUMENTS).is_file():
        return False
    meta = json.loads((collect_dir / "manifest.json").read_text())
    corpus = {k: v for k, v in (meta.get("corpus") or {}).items() if k in CorpusConfig.model_fields}
    # The manifest's corpus identity leaves max_doc_tokens out for whole documents.
    corpus.setdefault("max_doc_tokens", None)
    try:
        seqs, starts = token_stream(CorpusConfig(**corpus), tokenizer)
    except (OSError, ValueError) as err:  # the corpus or tokenizer is gone or changed
        log.warning("collect artifact %s: cannot re-read its corpus for document boundaries: %s",
                    collect_dir, err)
        return False
    stored = pq.read_table(collect_dir / "sequences.parquet", columns=["tokens"]).column("tokens")
    if len(stored) != len(seqs) or not torch.equal(torch.tensor(stored.to_pylist()), seqs):
        log.warning("collect artifact %s: its corpus no longer reproduces the stored tokens",
                    collect_dir)
        return False
    write_documents(starts, seqs[:, 1:].numel(), collect_dir)
    log.info("collect artifact %s: document boundaries recovered from its corpus (%d documents)",
             collect_dir, len(starts))
    return True


def read_doc_starts(collect_dir: Path, n_tokens: int) -> torch.Tensor:
    """[n_docs] int64 start token of each document of a collect artifact of n_tokens tokens."""
    path = Path(collect_dir) / DOCUMENTS
    if not path.is_file():
        raise ValueError(f"collect artifact {collect_dir} has no {DOCUMENTS} (it was collected "
                         "before document boundaries were recorded, and mining splits train/test "
                         "by document), and its corpus no longer reproduces its tokens: delete "
                         "that directory and run again; collect rebuilds it under the same key, "
                         "so the trained SAE stays valid")
    starts = torch.from_numpy(pq.read_table(path, columns=["start"]).column("start")
                              .to_numpy().astype("int64"))
    if len(starts) == 0 or starts[0] != 0 or (starts[1:] < starts[:-1]).any() or \
            starts[-1] >= n_tokens:
        raise ValueError(f"{path}: document starts must begin at 0, never decrease and lie "
                         f"below the artifact's {n_tokens} tokens; collect the artifact again")
    return starts

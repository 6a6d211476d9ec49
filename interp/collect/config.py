"""The collect stage's config: where text comes from, how it is cut into sequences, and how
activations are stored."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.config_base import EMBEDDED, _Strict


class CorpusConfig(_Strict):
    """Where text comes from and how it is cut into token sequences."""

    source: str = Field(EMBEDDED, description="'embedded' (gensim's Wikipedia sample), a path to a "
                        ".txt/.jsonl/.parquet file or directory, or 'hf:<dataset>[:<split>]'.")
    text_field: str = Field("text", description="Column / JSON key holding the text (jsonl, parquet, hf).")
    n_tokens: int = Field(32_768, gt=0, description="Tokens of activations to collect.")
    seq_len: int = Field(65, ge=8, description="Tokens per sequence fed to the model (BOS + 64).")
    seed: int = Field(0, description="Seed for shuffling documents.")
    max_doc_tokens: int | None = Field(512, gt=0, description="Tokens taken from the start of "
        "each document (its EOS not counted), cut at that token count; null = whole documents. "
        "Mining splits train and test by document, so n_tokens should span many documents (at "
        "least n_tokens / (max_doc_tokens + 1)): at 512 the default 32,768 tokens of the embedded "
        "Wikipedia sample span 66 articles, whole they are 7. Applies to every source.")


class CollectConfig(_Strict):
    """Activation collection."""

    batch_size: int = Field(32, gt=0, description="Sequences per forward pass.")
    shard_sequences: int = Field(256, gt=0, description="Sequences per activation shard file.")
    grad_batch_size: int = Field(8, gt=0, description="Sequences per forward+backward pass when "
                                 "loss gradients are collected (sae.architecture gsae): the "
                                 "backward pass keeps every later layer's activations in memory.")
    dtype: Literal["float16", "bfloat16", "float32"] = Field("float16", description="Storage dtype "
        "of the activation shards; readers upcast to float32 batch by batch (SAE training and "
        "encoding compute in fp32). float16 halves disk and read time; bfloat16 for hookpoints "
        "whose activations exceed float16's range (65504).")
    store: Literal["dense", "tokens"] = Field("dense", description="What collect writes: 'dense' "
        "= the activations (tokens x d_model, in collect.dtype) beside the token ids; 'tokens' = "
        "the token ids only, and every stage that reads activations (mine, the imported SAE's "
        "metrics, dark_matter) recomputes them with the subject model's forward pass, shard by "
        "shard, exactly as collect would have stored them. Needs sae.path (an imported SAE): "
        "training reads the activations many times.")

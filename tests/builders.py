"""Small builders for tests: synthetic activation shards and a tiny TopK encoder."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from interp.collect.documents import write_documents


def write_random_documents(path: Path, n_tokens: int, seed: int = 0, mean_len: int = 24) -> torch.Tensor:
    """documents.parquet of a collect artifact: documents of seeded random lengths (1 to
    2 * mean_len tokens) covering n_tokens; returns their starts."""
    gen = torch.Generator().manual_seed(seed + 1)
    lengths = torch.randint(1, 2 * mean_len + 1, (n_tokens,), generator=gen)
    starts = torch.cumsum(lengths, 0) - lengths
    starts = starts[starts < n_tokens]
    write_documents(starts, n_tokens, path)
    return starts


def make_shards(path: Path, n_seq: int = 24, seq_len: int = 17, d: int = 8, per_shard: int = 10,
                seed: int = 0, vocab: int = 50, doc_len: int = 24,
                hookpoint: str = "blocks.0.hook_resid_post", tokens: torch.Tensor | None = None,
                doc_starts: torch.Tensor | None = None, key: str = "test") -> Path:
    """A collect artifact of random activations in the documented shard format, over documents
    of random lengths averaging doc_len tokens; or over given [n_seq, seq_len] tokens and
    document starts."""
    path.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    if tokens is not None:
        n_seq, seq_len = tokens.shape
    acts = torch.randn(n_seq, seq_len, d, generator=gen)
    if tokens is None:
        tokens = torch.randint(2, vocab, (n_seq, seq_len), generator=gen)
        tokens[:, 0] = 1
    tokens = tokens.int()
    shards = []
    for i, first in enumerate(range(0, n_seq, per_shard)):
        name = f"shard-{i:05d}.safetensors"
        save_file({"acts": acts[first:first + per_shard].contiguous(),
                   "tokens": tokens[first:first + per_shard].contiguous()}, str(path / name))
        shards.append({"file": name, "first_seq": first, "n_seq": min(per_shard, n_seq - first)})
    pq.write_table(pa.table({
        "seq_id": list(range(n_seq)), "tokens": tokens.tolist(),
        "token_str": [[f"t{t}" for t in row] for row in tokens.tolist()]}), path / "sequences.parquet")
    if doc_starts is None:
        write_random_documents(path, n_seq * (seq_len - 1), seed, doc_len)
    else:
        write_documents(doc_starts, n_seq * (seq_len - 1), path)
    (path / "manifest.json").write_text(json.dumps({
        "stage": "collect", "key": key, "d_model": d, "seq_len": seq_len, "n_sequences": n_seq,
        "hookpoint": hookpoint, "shards": shards}))
    return path


class WordTokenizer:
    """A word-level stand-in for a subject model's tokenizer: BOS 1, EOS 2, words hashed to ids."""

    bos_token_id, eos_token_id = 1, 2

    def __init__(self, vocab: int = 50):
        self.vocab = vocab

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [3 + zlib.crc32(w.encode()) % (self.vocab - 3) for w in text.split()]}


def seed_collect(cfg, d: int = 8) -> Path:
    """The collect artifact a run of `cfg` would make, without a subject model: the real corpus
    reader and token stream (word-level tokens, so the documents are the corpus's own) with
    random activations, under collect's key, so `interp run` finds collect cached."""
    from interp.collect.corpus import token_stream

    tokens, doc_starts = token_stream(cfg.corpus, WordTokenizer())
    return make_shards(Path(cfg.home) / "artifacts" / "collect" / key(cfg, "collect"), d=d,
                       tokens=tokens, doc_starts=doc_starts, key=key(cfg, "collect"),
                       hookpoint=cfg.model.hookpoint)


def tiny_run_config(tmp: Path, url: str, **over) -> Path:
    """The config file (tmp/run.yaml) of a tiny run under tmp/home over a .txt corpus of 48
    documents, its collect artifact seeded (seed_collect), so `interp run` needs no subject
    model; `over` as tests.conftest.tiny_config takes it."""
    from interp.config import dump_config
    from tests.conftest import tiny_config

    corpus = tmp / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(f"w{(5 * i + j) % 43}" for j in range(16))
                                  for i in range(48)))
    cfg = tiny_config(tmp / "home", url, corpus={"source": str(corpus), "n_tokens": 640}, **over)
    seed_collect(cfg)
    (tmp / "run.yaml").write_text(dump_config(cfg))
    return tmp / "run.yaml"


class TinyTopK:
    """Deterministic TopK encoder: relu(x @ W) keeping the k largest (a stand-in with SAE's encode)."""

    def __init__(self, d: int, m: int, k: int, seed: int = 0):
        self.W = torch.randn(d, m, generator=torch.Generator().manual_seed(seed))
        self.num_latents, self.k = m, k

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor:
        vals, idx = self.encode(x)
        return torch.zeros(len(x), self.num_latents).scatter_(1, idx, vals)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = torch.relu(x @ self.W)
        return pre.topk(self.k, dim=-1)


def write_explanation_embeddings(explain_dir: Path) -> Path:
    """explanation_embeddings.parquet (MiniLM vectors of the ok explanations) in an explain
    artifact, as the explain stage provides it for publish to insert."""
    from interp.embed import explanation_embeddings

    rows = pq.read_table(explain_dir / "explanations.parquet",
                         columns=["explanation_id", "text", "status"]).to_pylist()
    ok = [r for r in rows if r["status"] == "ok" and r["text"]]
    out = explain_dir / "explanation_embeddings.parquet"
    pq.write_table(explanation_embeddings([r["explanation_id"] for r in ok], [r["text"] for r in ok]), out)
    return out


def write_match_artifact(home: Path, sae_a: str, sae_b: str) -> str:
    """artifacts/match/<key>/matches.parquet of two trained SAEs, as the match stage writes it;
    returns the key (publish it with {"match": key})."""
    from interp.analysis.match import decoder_matches

    key = f"{sae_a[:8]}-{sae_b[:8]}"
    d = Path(home) / "artifacts" / "match" / key
    d.mkdir(parents=True, exist_ok=True)
    train = Path(home) / "artifacts" / "train"
    pq.write_table(decoder_matches(train / sae_a, train / sae_b, sae_a, sae_b), d / "matches.parquet")
    (d / "manifest.json").write_text(json.dumps({"stage": "match", "key": key, "saes": [sae_a, sae_b]}))
    return key


LOGIT_TOKEN = "<b>tok{}</b>"  # token strings with markup: pages must show them as text


def write_logits_artifact(home: Path, sae_key: str, vocab: int = 40, k: int = 3) -> str:
    """artifacts/logits/<key>/latent_logits.parquet of a trained SAE through a random stand-in
    unembedding (no subject model); returns the key (publish it with {"logits": key})."""
    import torch

    from interp.analysis.logits import Readout, project

    train = Path(home) / "artifacts" / "train" / sae_key
    d_model = json.loads((train / "cfg.json").read_text())["d_in"]
    W_U = torch.randn(d_model, vocab, generator=torch.Generator().manual_seed(0))
    readout = Readout(W_U, None, False, lambda ids: [LOGIT_TOKEN.format(i) for i in ids])
    key = f"logits-{sae_key[:8]}"
    d = Path(home) / "artifacts" / "logits" / key
    d.mkdir(parents=True, exist_ok=True)
    project(train, sae_key, readout, d / "latent_logits.parquet", k=k, block=7)
    (d / "manifest.json").write_text(json.dumps({"stage": "logits", "key": key, "train": sae_key}))
    return key


def keyword_windows(rng, keyword: str, n: int, active: bool, filler: list[str],
                    act: float = 3.0) -> list[tuple[list[str], list[float]]]:
    """n windows of 4 filler tokens; an active one has `keyword` at a random position with
    activation `act` (scorer tests whose judge recognises the keyword)."""
    out = []
    for _ in range(n):
        toks = [f" {rng.choice(filler)}" for _ in range(4)]
        acts = [0.0] * 4
        if active:
            pos = rng.randrange(4)
            toks[pos], acts[pos] = f" {keyword}", act
        out.append((toks, acts))
    return out


# --- One stage at a time through the runner (interp.stages.build), inputs passed explicitly ----

def stage(cfg, name: str, *, llm=None, shard=None, progress: bool = False, **inputs):
    """Build stage `name` from the given input artifacts (keyword = stage name)."""
    from interp.stages import build

    return build(cfg, name, inputs, llm=llm, shard=shard, progress=progress)


def collect(cfg, model=None, progress: bool = False):
    """The collect stage; with `model` (a loaded SubjectModel) instead of loading one."""
    import interp.collect.stage as collect_stage

    real = collect_stage.load_model
    if model is not None:
        collect_stage.load_model = lambda *a, **k: model
    try:
        return stage(cfg, "collect", progress=progress)
    finally:
        collect_stage.load_model = real


def train_stage(cfg, collect, progress: bool = False):
    return stage(cfg, "train", collect=collect, progress=progress)


def mine(cfg, collect, train):
    return stage(cfg, "mine", collect=collect, train=train)


def explain(cfg, mine, collect, **kw):
    return stage(cfg, "explain", mine=mine, collect=collect, **kw)


def score(cfg, explain, mine, collect, train, **kw):
    return stage(cfg, "score", explain=explain, mine=mine, collect=collect, train=train, **kw)


def hand_artifacts(home: Path, sequences: list[dict], examples: list[dict],
                   explanations: list[dict], frequencies: list[dict] | None = None,
                   doc_starts: list[int] | None = None) -> dict:
    """collect/train/mine/explain artifacts written by hand from rows (a scorer test's known
    windows): stage name -> ArtifactRef, the inputs of the score stage. The train artifact is
    empty (scorers that load the SAE are tested elsewhere). With `doc_starts` (token offsets,
    BOS dropped) the collect artifact has its document table: the probes can be built."""
    from interp.artifacts import ArtifactStore

    store = ArtifactStore(home)

    def writer(name, rows, extra=None):
        def fill(tmp):
            pq.write_table(pa.Table.from_pylist(rows), tmp / name)
            if doc_starts is not None and name == "sequences.parquet":
                n_tokens = len(rows) * (len(rows[0]["tokens"]) - 1)
                write_documents(torch.tensor(doc_starts), n_tokens, tmp)
            return extra or {}
        return fill
    refs = {"collect": store.build_once("collect", "c0", writer("sequences.parquet", sequences)),
            "train": store.build_once("train", "s0", lambda tmp: {}, inputs={"collect": "c0"})}
    refs["mine"] = store.build_once("mine", "m0", writer("examples.parquet", examples),
                                    inputs={"collect": "c0", "train": "s0"})
    if frequencies is not None:
        pq.write_table(pa.Table.from_pylist(frequencies), refs["mine"].path / "latents.parquet")
    refs["explain"] = store.build_once("explain", "e0", writer("explanations.parquet", explanations),
                                       inputs={"mine": "m0"})
    return refs


def key(cfg, name: str, **input_keys: str) -> str:
    """The key the runner gives stage `name` under `cfg` from its inputs' keys."""
    from interp.stages import stage_key

    return stage_key(cfg, name, input_keys)


def real_model_config(home: Path, model_cache: Path, llm_url: str, timeout_s: float):
    """The smallest whole run of the real subject model, for tests that interrupt one through the
    CLI: 12 sequences of 33 tokens in shards of 4 (d = 576 fp16: 152 KiB a shard), a 1x SAE, 2
    latents explained and scored by the scripted server at `llm_url`."""
    from interp.config import build_config

    return build_config({
        "home": str(home), "model": {"cache_dir": str(model_cache)},
        "corpus": {"n_tokens": 384, "seq_len": 33, "max_doc_tokens": 40},
        "collect": {"batch_size": 4, "shard_sequences": 4},
        "sae": {"expansion_factor": 1, "k": 4, "epochs": 1, "eval_sequences": 0},
        "mine": {"window": 16, "n_top": 3, "n_quantiles": 2, "per_quantile": 2, "n_random": 2},
        "explain": {"n_latents": 2, "n_examples": 3, "min_examples": 2, "min_heldout": 2,
                    "embed": False},
        "score": {"n_positive": 2, "n_negative": 2, "batch_size": 4, "controls": []},
        "logits": {"k": 0},
        "llm": {"backend": "openai", "base_url": llm_url, "timeout_s": timeout_s}})


def tree_hash(root: Path) -> str:
    """One hash of every path and file byte under root (or of root's bytes, for a file):
    'nothing under it changed'. A file root used to hash nothing (rglob of a file is empty), so
    the disk-full test's "the catalogue is untouched" compared two empty hashes."""
    import hashlib

    h = hashlib.sha256()
    if root.is_file():
        h.update(root.read_bytes())
        return h.hexdigest()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()

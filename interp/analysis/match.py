"""Match stage: each latent of a new SAE against the latents of the other SAEs of the same model
and hookpoint already in the artifact store (best decoder cosine, both directions), so the
catalogue can compare their explanations (`latent_match_compare`). Its own cached stage, so
publish only inserts rows and never does this quadratic work under the catalogue lock.

The peers are found in the store when the key is computed, and their keys are part of it: a new
SAE of the same hookpoint later makes a new match artifact for the SAEs trained after it.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from interp.artifacts import ArtifactRef, ArtifactStore, artifact_key, write_parquet_atomic
from interp.config import RunConfig

STAGE = "match"
VERSION = "1"
SCHEMA = pa.schema([("sae_a", pa.string()), ("latent_a", pa.int32()), ("sae_b", pa.string()),
                    ("latent_b", pa.int32()), ("cosine", pa.float32())])


def peers(cfg: RunConfig, train_key: str) -> list[str]:
    """Other trained SAEs of the same model, hookpoint and width (the newest match.max_peers)."""
    store = ArtifactStore(cfg.home)
    me = store.require("train", train_key).manifest()
    found = []
    for key in store.keys("train"):
        if key == train_key:
            continue
        man = store.require("train", key).manifest()
        if (man.get("hookpoint"), man.get("model")) == (me.get("hookpoint"), me.get("model")):
            found.append((man.get("created_at", 0.0), key))
    return [k for _, k in sorted(found, reverse=True)[:cfg.match.max_peers]]


def match_key(cfg: RunConfig, train_key: str) -> str:
    return artifact_key(STAGE, VERSION, {"max_peers": cfg.match.max_peers}, {"train": train_key},
                        {"peers": sorted(peers(cfg, train_key))})


def match(cfg: RunConfig, train_ref: ArtifactRef) -> ArtifactRef:
    """matches.parquet: the best match of every latent in each peer SAE, both directions."""
    from interp.analysis.matching import decoder_matches, load_decoder

    store = ArtifactStore(cfg.home)
    device = cfg.match.device or cfg.sae.device or cfg.model.device

    def fill(tmp: Path) -> dict:
        width = load_decoder(train_ref.path).shape[1]
        tables, used = [], []
        for key in peers(cfg, train_ref.key):
            peer = store.require("train", key)
            if load_decoder(peer.path).shape[1] != width:
                continue  # a transcoder of another target: decodes to another space
            tables.append(decoder_matches(train_ref.path, peer.path, train_ref.key, key,
                                          device=device).cast(SCHEMA))
            used.append(key)
        table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        write_parquet_atomic(table, tmp / "matches.parquet")
        return {"train": train_ref.key, "peers": used, "rows": table.num_rows}
    return store.build_once(STAGE, match_key(cfg, train_ref.key), fill,
                            inputs={"train": train_ref.key})

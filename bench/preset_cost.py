"""LLM calls and prompt tokens per latent of each protocol preset, counted without generating.

For each preset, on the latents its explain stage would pick from its mine artifact (built here
if missing, from the one collect and train artifact under --home), this renders every
prompt the pipeline sends (explain's, then each scorer's, batched as the scorer batches) and
counts its tokens with the subject model's own tokenizer and chat template (the embedded
SmolLM2's, saved beside the converted model), the assistant prefill continued as llama.cpp does.
Scorer prompts need an explanation: the latent's real one when --explanation-from names an
explain artifact, else a 9-word stand-in. Completion tokens are not generated here; their budget
(max_tokens) is printed beside.

    python bench/preset_cost.py --home /tmp/presets-meas/home --latents 8
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from transformers import AutoTokenizer

from interp.artifacts import ArtifactStore
from interp.config import load_config
from interp.mine.examples import load_examples
from interp.explain.format import training_examples, training_negatives
from interp.explain.stage import build_messages, select_latents
from interp.stages import build
from interp.models import resolve_hf_source
from interp.presets import preset_names
from interp.scoring.cost import llm_calls
from interp.prompts import load_prompt
from interp.scoring.windows import detection_items, format_items, fuzzing_items
from interp.scoring.saebench import scoring_items

STAND_IN = "the word 'the' at the start of a sentence in news text"


def _count(tok, messages) -> int:
    prefill = messages[-1]["role"] == "assistant"
    return len(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=not prefill,
                                       continue_final_message=prefill, return_dict=False))


def _score_prompts(cfg, name, examples, latent, explanation):
    """The messages of every call scorer `name` makes for one latent."""
    s = cfg.score
    if name == "saebench":
        rng = random.Random(f"{s.seed}:{latent}:saebench")
        items = scoring_items(examples, s.saebench.n_top, s.saebench.n_iw, s.saebench.n_random, rng)
        if not items:
            return []
        body = "\n".join(f"{i}. {it.text}" for i, it in enumerate(items, 1))
        example = ", ".join(str(i) for i in range(1, sum(it.label for it in items) + 1))
        return [load_prompt(s.saebench.prompt).messages(explanation=explanation, examples=body,
                                                        n=len(items), example=example)]
    prompt = load_prompt(getattr(s, name).prompt + ("" if s.batch_size == 1 else "_batch"))
    items = {"detection": detection_items, "fuzzing": fuzzing_items}[name](examples, s.n_positive, s.n_negative,
                           random.Random(f"{s.seed}:{latent}:{name}"))
    batches = [items[b:b + s.batch_size] for b in range(0, len(items), s.batch_size)]
    return [prompt.messages(explanation=explanation, examples=format_items(b), n=len(b))
            for b in batches]


def _only(home: Path, stage: str) -> str:
    """The key of the home's one finished artifact of `stage` (a measurement home has one)."""
    keys = [p.name for p in (home / "artifacts" / stage).iterdir()
            if p.is_dir() and (p / "manifest.json").is_file()]
    if len(keys) != 1:
        raise SystemExit(f"{home} has {len(keys)} {stage} artifacts; this tool needs exactly one")
    return keys[0]


def preset_cost(home: Path, preset: str, n_latents: int, explanations: dict[int, str]) -> dict:
    cfg = load_config(None, {"home": str(home), "explain.n_latents": n_latents}, preset=preset)
    store = ArtifactStore(home)
    refs = {stage: store.require(stage, _only(home, stage)) for stage in ("collect", "train")}
    mine_ref = build(cfg, "mine", refs)
    tok = AutoTokenizer.from_pretrained(resolve_hf_source(cfg.model, home))
    latents = select_latents(mine_ref.path, cfg)
    by_latent = load_examples(mine_ref.path, refs["collect"].path, latents)
    out: dict[str, list[int]] = {"explain": []}
    calls: dict[str, list[int]] = {}
    for latent, examples in by_latent.items():
        train = training_examples(examples, cfg.explain.train_set, cfg.explain.n_examples)
        if len(train) < cfg.explain.min_examples:
            continue
        negatives = training_negatives(examples, cfg.explain.n_negatives)
        out["explain"].append(_count(tok, build_messages(load_prompt(cfg.explain.prompt), cfg,
                                                         train, negatives)))
        for name in cfg.score.scorers:
            msgs = _score_prompts(cfg, name, examples, latent, explanations.get(latent, STAND_IN))
            out.setdefault(name, []).append(sum(_count(tok, m) for m in msgs))
            calls.setdefault(name, []).append(len(msgs))
    return {"preset": preset, "latents": len(out["explain"]), "mine": mine_ref.key,
            "calls_config": llm_calls(cfg),
            "calls_measured": {k: statistics.fmean(v) for k, v in calls.items()},
            "prompt_tokens_per_latent": {k: round(statistics.fmean(v)) for k, v in out.items() if v},
            "max_completion_tokens_per_call": {
                "explain": cfg.explain.max_tokens,
                **{n: (cfg.score.saebench.max_tokens or 2 * (cfg.score.saebench.n_top +
                       cfg.score.saebench.n_iw + cfg.score.saebench.n_random) + 5)
                   if n == "saebench" else cfg.score.max_tokens * cfg.score.batch_size
                   for n in cfg.score.scorers}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--latents", type=int, default=8)
    ap.add_argument("--presets", nargs="*", default=preset_names())
    ap.add_argument("--explanation-from", type=Path, help="explanations.parquet to take "
                    "each latent's real explanation from")
    args = ap.parse_args()
    explanations: dict[int, str] = {}
    if args.explanation_from:
        import pyarrow.parquet as pq
        t = pq.read_table(args.explanation_from, columns=["latent", "text", "status"]).to_pylist()
        explanations = {r["latent"]: r["text"] for r in t if r["status"] == "ok"}
    for p in args.presets:
        print(json.dumps(preset_cost(args.home, p, args.latents, explanations)))


if __name__ == "__main__":
    main()

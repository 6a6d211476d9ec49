"""LLM calls and prompt tokens per latent of each protocol preset, counted without generating.

For each preset, on the latents its explain stage would pick from its mine artifact (built here
if missing, from the one collect and train artifact under --home), this asks every configured
LLM scorer for the requests it would send (`LLMScorer.asks`, with the ScoreContext the score
stage builds, interp/scoring/work.py), so what is counted is exactly the pipeline's prompts:
the default's one call per latent and scorer (score.batch_size 'all'), the paper preset's 5
windows per call, the controls on the same windows, and the known-answer probes once per run.
Messages are counted as the client sends them (a trailing assistant turn is dropped when the
answer is constrained to a JSON schema) with the subject model's own tokenizer and chat template
(the embedded SmolLM2's, which is also the embedded judge's). Scorer prompts need an explanation:
the latent's real one when --explanation-from names an explanations.parquet, else a stand-in.

Reference row: delphi's default detection and fuzzing prompts (system prompt, three few-shot
examples, 5 windows per call: `num_examples_per_scorer_prompt`) counted on the same windows,
from token counts of delphi's fixed prompt text stored in DELPHI (never its text), plus the
explanation and the windows as delphi lists them. Target of issue 21: our prompt tokens per
scored window <= 0.3x delphi's.

    python bench/preset_cost.py --home /work/runs/default1 --latents 24 \
        --explanation-from /work/runs/default1/artifacts/explain/<key>/explanations.parquet
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
from interp.explain.format import training_examples, training_negatives
from interp.explain.stage import build_messages, select_latents
from interp.llm.openai_client import OpenAICompatibleLLM
from interp.mine.examples import load_examples
from interp.models import resolve_hf_source
from interp.presets import preset_names
from interp.prompts import load_prompt
from interp.scoring.base import ScoreContext, unscorable_reason
from interp.scoring.controls import control_texts, derangement
from interp.scoring.cost import llm_calls
from interp.scoring.llm_scorer import LLMScorer
from interp.scoring.probes import build_probes
from interp.scoring.registry import SCORERS
from interp.scoring.resources import StageResources
from interp.stages import build

STAND_IN = "the word 'the' at the start of a sentence in news text"
WINDOW_JUDGES = ("detection", "fuzzing")  # the scorers whose cost per scored window is reported

# delphi's default classifier prompts, counted once with the embedded SmolLM2's tokenizer and
# chat template (generation prompt added): every message of `prompt(examples="",
# explanation="")`, i.e. the system prompt, the three few-shot user/assistant pairs and the
# final user turn's scaffold. A call adds the explanation and the examples block
# ("Example 0: <window>" lines joined by newlines, delphi's Classifier._build_prompt) to it.
DELPHI = {
    "repo": "EleutherAI/delphi",
    "commit": "3c2e139378b56ca02a632697b541a11aebf03855",
    "examples_per_prompt": 5,  # delphi/config.py RunConfig.num_examples_per_scorer_prompt
    "fixed_tokens": {
        "detection": 645,  # delphi/scorers/classifier/prompts/detection_prompt.py
        "fuzzing": 763,    # delphi/scorers/classifier/prompts/fuzz_prompt.py
    },
}


def _count(tok, messages) -> int:
    prefill = messages[-1]["role"] == "assistant"
    return len(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=not prefill,
                                       continue_final_message=prefill, return_dict=False))


def _only(home: Path, stage: str) -> str:
    """The key of the home's one finished artifact of `stage` (a measurement home has one)."""
    keys = [p.name for p in (home / "artifacts" / stage).iterdir()
            if p.is_dir() and (p / "manifest.json").is_file()]
    if len(keys) != 1:
        raise SystemExit(f"{home} has {len(keys)} {stage} artifacts; this tool needs exactly one")
    return keys[0]


class Counter:
    """Counts the requests scorers would send, as the client would send them."""

    def __init__(self, cfg, tok, resources, structured: bool):
        self.cfg, self.tok, self.resources, self.structured = cfg, tok, resources, structured
        # The client's own rule for a trailing assistant turn (kept as prefill or dropped).
        self.client = OpenAICompatibleLLM(cfg.llm, "http://127.0.0.1:9/v1")

    def asks(self, name: str, latent: int, explanation: str, examples, purpose: str):
        scorer = SCORERS[name]
        ctx = ScoreContext(self.cfg, None, self.resources, purpose=purpose,
                           structured=self.structured)
        asks, _prompt = scorer.asks(ctx, latent, explanation, examples)
        return asks

    def tokens(self, ask) -> int:
        constrained = ask.schema is not None and self.structured
        messages, _prefill, _body = self.client._prefill(ask.messages, constrained)
        return _count(self.tok, messages)


def _delphi_tokens(tok, name: str, explanation: str, items) -> int:
    """Prompt tokens of delphi's default protocol judging `items`, 5 windows per call."""
    k, total = DELPHI["examples_per_prompt"], 0
    explained = len(tok.encode(explanation, add_special_tokens=False))
    for b in range(0, len(items), k):
        block = "\n".join(f"Example {i}: {it.text}" for i, it in enumerate(items[b:b + k]))
        total += DELPHI["fixed_tokens"][name] + explained + \
            len(tok.encode(block, add_special_tokens=False))
    return total


def _latent_cost(counter: Counter, latent: int, examples, explanation: str, shuffled, acc) -> None:
    """Add one latent's requests (the explanation's, then the controls') to the accumulators."""
    cfg = counter.cfg
    calls = tokens = 0  # the controls' requests, over every controlled scorer
    for name in cfg.score.scorers:
        scorer = SCORERS[name]
        if not isinstance(scorer, LLMScorer) or unscorable_reason(scorer.needs, examples):
            continue
        asks = counter.asks(name, latent, explanation, examples, name)
        toks = [counter.tokens(a) for a in asks]
        acc["calls"].setdefault(name, []).append(len(asks))
        acc["tokens"].setdefault(name, []).append(sum(toks))
        acc["completion"].setdefault(name, []).append(sum(a.max_tokens for a in asks))
        acc["max_completion_call"][name] = max([acc["max_completion_call"].get(name, 0)]
                                               + [a.max_tokens for a in asks])
        if name in WINDOW_JUDGES and asks:
            items = [it for a in asks for it in a.items]
            w = acc["windows"].setdefault(name, [0, 0, 0])
            w[0] += sum(toks)
            w[1] += len(items)
            w[2] += _delphi_tokens(counter.tok, name, explanation, items)
        if name not in cfg.score.controlled_scorers():
            continue
        designs = tuple(c for c in cfg.score.controls if c in scorer.controls)
        rng = random.Random(f"{cfg.score.seed}:{latent}:{name}:control")
        for control, text in control_texts(designs, latent, shuffled, examples).items():
            stand_in = scorer.control_input(control, text, examples, [], rng)
            if stand_in is not None:
                ctrl = counter.asks(name, latent, stand_in[0], stand_in[1], f"control:{name}")
                calls += len(ctrl)
                tokens += sum(counter.tokens(a) for a in ctrl)
    acc["control_calls"].append(calls)
    acc["control_tokens"].append(tokens)


def new_acc() -> dict:
    """Empty accumulators of `count_scoring`."""
    return {"calls": {}, "tokens": {"explain": []}, "completion": {}, "max_completion_call": {},
            "windows": {}, "control_calls": [], "control_tokens": []}


def count_scoring(counter: Counter, by_latent: dict, explained: dict[int, str], acc: dict) -> None:
    """Count the score stage's requests for the explained latents (latent -> explanation), as
    interp/scoring/work.py makes them: each scorer on the explanation, then the controls (the
    'shuffled' one drawn by the stage's derangement), every latent counted as controlled."""
    cfg = counter.cfg
    shuffled = {l: explained[o] for l, o in derangement(sorted(explained), cfg.score.seed).items()} \
        if "shuffled" in cfg.score.controls else {}
    for latent, text in explained.items():
        _latent_cost(counter, latent, by_latent[latent], text, shuffled, acc)


def _probe_cost(counter: Counter, collect_dir: Path) -> tuple[int, int]:
    """(calls, prompt tokens) of the known-answer probes: once per run, every probed scorer."""
    cfg, calls, tokens = counter.cfg, 0, 0
    if not cfg.score.probes:
        return 0, 0
    for pid, (rule, examples) in build_probes(cfg, collect_dir).items():
        for name in cfg.score.scorers:
            scorer = SCORERS[name]
            if not (scorer.probed and isinstance(scorer, LLMScorer)) or \
                    unscorable_reason(scorer.needs, examples):
                continue
            asks = counter.asks(name, pid, rule, examples, f"probe:{name}")
            calls += len(asks)
            tokens += sum(counter.tokens(a) for a in asks)
    return calls, tokens


def _mean(v) -> float:
    return round(statistics.fmean(v), 2) if v else 0.0


def preset_cost(home: Path, preset: str, n_latents: int, explanations: dict[int, str],
                structured: bool | None) -> dict:
    cfg = load_config(None, {"home": str(home), "explain.n_latents": n_latents}, preset=preset)
    store = ArtifactStore(home)
    refs = {stage: store.require(stage, _only(home, stage)) for stage in ("collect", "train")}
    mine_ref = build(cfg, "mine", refs)
    tok = AutoTokenizer.from_pretrained(resolve_hf_source(cfg.model, home))
    # As the client resolves llm.structured_outputs; 'auto' on an unknown server: not assumed.
    structured = bool(cfg.llm.constrains()) if structured is None else structured
    resources = StageResources(cfg, refs["train"].path, refs["collect"].path / "sequences.parquet")
    counter = Counter(cfg, tok, resources, structured)
    by_latent = load_examples(mine_ref.path, refs["collect"].path, select_latents(mine_ref.path, cfg))
    acc = new_acc()
    explained = {}
    for latent, examples in by_latent.items():
        train = training_examples(examples, cfg.explain.train_set, cfg.explain.n_examples)
        if len(train) < cfg.explain.min_examples:
            continue
        negatives = training_negatives(examples, cfg.explain.n_negatives)
        acc["tokens"]["explain"].append(_count(tok, build_messages(
            load_prompt(cfg.explain.prompt), cfg, train, negatives)))
        explained[latent] = explanations.get(latent, STAND_IN)
    count_scoring(counter, by_latent, explained, acc)
    probe_calls, probe_tokens = _probe_cost(counter, refs["collect"].path)
    per_window = {n: {"ours": round(t / w, 1), "delphi": round(d / w, 1),
                      "ratio_to_delphi": round(t / d, 3), "windows": w}
                  for n, (t, w, d) in acc["windows"].items() if w}
    return {"preset": preset, "latents": len(explained), "mine": mine_ref.key,
            "structured": structured,
            "real_explanations": sum(l in explanations for l in explained),
            "calls_config": llm_calls(cfg),
            "calls_measured": {k: _mean(v) for k, v in acc["calls"].items()}
            | {"controls": _mean(acc["control_calls"]), "probes": probe_calls},
            "prompt_tokens_per_latent": {k: round(_mean(v)) for k, v in acc["tokens"].items() if v}
            | {"controls": round(_mean(acc["control_tokens"])), "probes": probe_tokens},
            "completion_budget_per_latent": {"explain": cfg.explain.max_tokens}
            | {k: round(_mean(v)) for k, v in acc["completion"].items()},
            "max_completion_tokens_per_call": {"explain": cfg.explain.max_tokens}
            | acc["max_completion_call"],
            "prompt_tokens_per_window": per_window}


def _line(r: dict) -> str:
    steps = ", ".join(f"{k} {v}" for k, v in r["prompt_tokens_per_latent"].items()
                      if k not in ("controls", "probes"))
    windows = "; ".join(f"{k} {v['ours']} vs delphi {v['delphi']} = {v['ratio_to_delphi']}x"
                        for k, v in r["prompt_tokens_per_window"].items())
    calls = ", ".join(f"{k} {v}" for k, v in r["calls_measured"].items()
                      if k not in ("controls", "probes"))
    return (f"{r['preset']:9s} {r['latents']} latents | calls/latent {calls} | prompt tokens/"
            f"latent {steps} | controls +{r['calls_measured']['controls']} calls "
            f"+{r['prompt_tokens_per_latent']['controls']} tokens per controlled latent | probes "
            f"{r['calls_measured']['probes']} calls {r['prompt_tokens_per_latent']['probes']} "
            f"tokens per run | tokens per scored window: {windows or '-'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--latents", type=int, default=8)
    ap.add_argument("--presets", nargs="*", default=preset_names())
    ap.add_argument("--explanation-from", type=Path, help="explanations.parquet to take "
                    "each latent's real explanation from")
    ap.add_argument("--structured", choices=("auto", "on", "off"), default="auto",
                    help="whether answers go constrained to their JSON schema (auto: as "
                    "llm.structured_outputs resolves; on the embedded server, on)")
    args = ap.parse_args()
    explanations: dict[int, str] = {}
    if args.explanation_from:
        import pyarrow.parquet as pq
        t = pq.read_table(args.explanation_from, columns=["latent", "text", "status"]).to_pylist()
        explanations = {r["latent"]: r["text"] for r in t if r["status"] == "ok"}
    structured = {"auto": None, "on": True, "off": False}[args.structured]
    results = [preset_cost(args.home, p, args.latents, explanations, structured)
               for p in args.presets]
    for r in results:
        print(json.dumps(r))
    print(f"delphi reference: {DELPHI['repo']}@{DELPHI['commit'][:10]}, "
          f"{DELPHI['examples_per_prompt']} windows per call, fixed prompt tokens "
          f"{DELPHI['fixed_tokens']}")
    for r in results:
        print(_line(r))


if __name__ == "__main__":
    main()

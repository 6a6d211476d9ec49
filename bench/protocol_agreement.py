"""Does the one-call detection protocol (score.batch_size 'all') judge as well as the per-window
one (batch_size 1)? Accuracy on known-answer cases, both protocols on the same windows.

Cases: the known-answer probes (interp/scoring/probes.py: 'the word "the"', digits, capitalised
words, the corpus's most frequent name) built from a home's collect artifact for --seeds probe
seeds (score.seed draws other held-out windows), or planted keyword latents (--source keywords:
synthetic windows, a latent fires on its keyword). Each case goes through the detection scorer
itself (`Detection.run`) once per protocol; detection draws its windows before it builds the
requests, so both protocols judge the same windows. Judges:
  scripted  knows every window's true label and answers it correctly with probability
            --p-correct, drawn independently per window and protocol; in the one-call form
            accuracy can also fall linearly down the prompt by --position-bias (first window
            p, last window p - bias). A run per listed bias.
  embedded  the embedded llama.cpp judge (SmolLM2-135M), or any server at --base-url.
Reported per judge: mean accuracy of each protocol over cases (valid answers only; failures
counted), and the paired difference one-call minus per-window with a 95% Student t interval over
cases (paired: same case, same windows).

    python bench/protocol_agreement.py --home /work/runs/default1 --seeds 10 --judges scripted
    python bench/protocol_agreement.py --home /work/runs/default1 --seeds 3 --judges embedded
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.order_effects import judge_config
from interp.config import load_config
from interp.llm import open_llm
from interp.llm.config import LLMConfig
from interp.mine.examples import Example
from interp.scoring.base import ScoreContext
from interp.scoring.registry import SCORERS
from interp.scoring.stats import t_interval
from tests.fakeserver import FakeLLMServer

PROTOCOLS = {"one_call": "all", "per_window": 1}
KEYWORDS = ["banana", "guitar", "volcano", "senator", "umbrella", "penguin", "violin", "glacier",
            "harbor", "lantern", "meadow", "tractor", "pepper", "castle", "rocket", "island"]
FILLER = ["the", "walked", "slowly", "across", "a", "quiet", "street", "before", "evening", "and",
          "then", "turned", "left", "near", "old", "house", "with", "friends", "after", "rain"]


@dataclass(frozen=True)
class Case:
    """A known answer: the rule given as the explanation, its windows, the score seed."""

    name: str
    latent: int
    explanation: str
    examples: list[Example]
    seed: int


def probe_cases(home: Path, seeds: int) -> list[Case]:
    """The known-answer probes of the default config on `home`'s collect artifact, per seed."""
    from bench.preset_cost import _only
    from interp.artifacts import ArtifactStore
    from interp.scoring.probes import build_probes

    collect = ArtifactStore(home).require("collect", _only(home, "collect")).path
    out = []
    for s in range(seeds):
        cfg = load_config(None, {"home": str(home), "score.seed": s})
        out += [Case(f"{rule}@{s}", pid, rule, examples, s)
                for pid, (rule, examples) in build_probes(cfg, collect).items()]
    return out


def keyword_cases(n: int, window: int = 12, per_class: int = 5, seed: int = 0) -> list[Case]:
    """n planted keyword latents: per_class held-out windows with the keyword (activating) and
    per_class without, `window` filler words each."""
    rng, out = random.Random(seed), []
    for latent in range(n):
        kw = KEYWORDS[latent % len(KEYWORDS)]
        examples = []
        for kind, active in (("quantile", True), ("random", False)):
            for rank in range(per_class):
                toks = [f" {rng.choice(FILLER)}" for _ in range(window)]
                acts = [0.0] * window
                if active:
                    at = rng.randrange(window)
                    toks[at], acts[at] = f" {kw}", 3.0
                examples.append(Example(latent, kind, "test", rank, rank % 2 if active else -1,
                                        len(out) * 100 + len(examples), 0, max(acts),
                                        tuple(toks), tuple(acts)))
        out.append(Case(f"{kw}#{latent}", latent, f'the word "{kw}"', examples, seed))
    return out


def _config(case: Case, protocol: str):
    return load_config(None, {"score.seed": case.seed, "score.batch_size": PROTOCOLS[protocol]})


def truth(cases: list[Case]) -> dict[tuple[str, str], int]:
    """(explanation, window text as shown) -> its true label, for the windows detection shows."""
    out = {}
    for case in cases:
        cfg = _config(case, "one_call")
        rng = random.Random(f"{cfg.score.seed}:{case.latent}:detection")  # as WindowJudge.asks
        for it in SCORERS["detection"].items(cfg.score, case.examples, rng):
            out[(case.explanation, it.text)] = it.label
    return out


def noisy_judge(known: dict[tuple[str, str], int], p_correct: float, position_bias: float = 0.0):
    """A FakeLLMServer answer function: the true label with probability p_correct (one-call:
    minus position_bias * position / (n - 1)), else the wrong one; seeded per window and form."""
    def right(form: str, description: str, text: str, p: float) -> int:
        u = zlib.crc32(f"{form}|{description}|{text}".encode()) / 2**32
        label = known[(description, text)]
        return label if u < p else 1 - label

    def answer(messages):
        user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        description = re.search(r"^Description: (.*)$", user, re.MULTILINE).group(1)
        shown = re.findall(r"^Example (\w+): (.*)$", user, re.MULTILINE)
        if not shown:  # per-window prompt: one bare example, the answer continues "[RESULT]:"
            text = re.search(r"^Example: (.*)$", user, re.MULTILINE).group(1)
            return f" {right('one', description, text, p_correct)}"
        n = len(shown)
        return json.dumps({"labels": {
            i: right("all", description, t, p_correct - position_bias * pos / max(n - 1, 1))
            for pos, (i, t) in enumerate(shown)}})
    return answer


async def _judge(llm, case: Case, protocol: str) -> dict:
    cfg = _config(case, protocol)
    ctx = ScoreContext(cfg, llm, None, purpose="detection")
    out = await SCORERS["detection"].run(ctx, case.latent, case.explanation, case.examples)
    valid = [p for p in out.predictions if p.prediction is not None]
    return {"case": case.name, "protocol": protocol, "windows": len(out.predictions),
            "failed": len(out.predictions) - len(valid),
            "accuracy": float(np.mean([p.prediction == p.label for p in valid])) if valid else None,
            "said_1": sum(p.prediction == 1 for p in valid), "valid": len(valid)}


async def judge_cases(llm, cases: list[Case]) -> list[dict]:
    """One record per (case, protocol)."""
    return list(await asyncio.gather(*[_judge(llm, c, p) for c in cases for p in PROTOCOLS]))


def summarize(records: list[dict]) -> dict:
    """Mean accuracy per protocol and the paired difference one-call minus per-window."""
    acc = {(r["case"], r["protocol"]): r["accuracy"] for r in records}
    cases = sorted({r["case"] for r in records})
    paired = [c for c in cases if all(acc[(c, p)] is not None for p in PROTOCOLS)]
    one, per = (np.array([acc[(c, p)] for c in paired]) for p in ("one_call", "per_window"))
    out = {"cases": len(cases), "paired": len(paired),
           "failed_windows": {p: sum(r["failed"] for r in records if r["protocol"] == p)
                              for p in PROTOCOLS},
           "windows": {p: sum(r["windows"] for r in records if r["protocol"] == p)
                       for p in PROTOCOLS},
           # a judge at chance often answers one label throughout: the share of 1s shows it
           "share_said_1": {p: round(sum(r["said_1"] for r in records if r["protocol"] == p)
                                     / max(1, sum(r["valid"] for r in records
                                                  if r["protocol"] == p)), 3)
                            for p in PROTOCOLS}}
    if len(paired) < 2:
        return out
    mean, lo, hi = t_interval(one - per)
    return out | {"accuracy_one_call": round(float(one.mean()), 4),
                  "accuracy_per_window": round(float(per.mean()), 4),
                  "difference": [round(float(v), 4) for v in (mean, lo, hi)]}


def _run(cfg: LLMConfig, cases: list[Case]) -> dict:
    with open_llm(cfg) as llm:
        t0 = time.monotonic()
        records = asyncio.run(judge_cases(llm, cases))
    return summarize(records) | {"wall_s": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=("probes", "keywords"), default="probes")
    ap.add_argument("--home", type=Path, help="a home with a collect artifact (--source probes)")
    ap.add_argument("--seeds", type=int, default=3, help="probe seeds (4 probes each)")
    ap.add_argument("--cases", type=int, default=16, help="keyword latents (--source keywords)")
    ap.add_argument("--judges", default="scripted,embedded")
    ap.add_argument("--p-correct", type=float, default=0.85)
    ap.add_argument("--position-bias", type=float, nargs="*", default=[0.0, 0.1])
    ap.add_argument("--base-url", help="OpenAI-compatible judge instead of the embedded one")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.source == "probes" and args.home is None:
        ap.error("--source probes needs --home")
    cases = probe_cases(args.home, args.seeds) if args.source == "probes" \
        else keyword_cases(args.cases)
    rows = []
    if "scripted" in args.judges:
        known = truth(cases)
        for bias in args.position_bias:
            with FakeLLMServer(noisy_judge(known, args.p_correct, bias)) as srv:
                cfg = LLMConfig(backend="openai", base_url=srv.base_url, structured_outputs="off")
                rows.append({"judge": f"scripted p={args.p_correct} position_bias={bias}"}
                            | _run(cfg, cases))
    if "embedded" in args.judges:
        rows.append({"judge": args.base_url or "embedded"}
                    | _run(judge_config(args.base_url, args.model, args.threads), cases))
    for r in rows:
        print(json.dumps(r))
    for r in rows:
        print(f"{r['judge']}: one-call {r.get('accuracy_one_call')} per-window "
              f"{r.get('accuracy_per_window')} difference {r.get('difference')} over "
              f"{r['paired']} cases (failed windows {r['failed_windows']}; share of 1s "
              f"{r['share_said_1']}) {r['wall_s']} s")


if __name__ == "__main__":
    main()

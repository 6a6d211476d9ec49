"""Order effects of the one-call detection prompt (score.batch_size 'all'): does the judge's label
of a window depend on where the window sits in the prompt?

Each case (a latent's held-out detection windows with its explanation, from a home's mine and
explain artifacts; or k sentences of tests/labelling.py with the rule "mentions an animal") is
judged twice through the pipeline's one-call prompt (`WindowJudge._ask_all`): once in the order
and with the ids the score stage would send, once re-shuffled with fresh ids (both seeded).
Reported:
  agreement   the share of windows labelled alike in both orders, per case (Clopper-Pearson
              95%) and pooled (95% percentile bootstrap over cases: a case's windows share a
              prompt, so cases, not windows, are the independent units), and pooled Cohen's
              kappa (a judge that answers 1 almost always agrees with itself almost always);
  position    P(label = 1) at each position (pooled over cases and both orders, Clopper-Pearson),
              the least-squares slope of the label on the position (per position step), and the
              within-window slope: the change of a window's own label between its two positions
              per position step (sum dy*dp / sum dp^2), which holds the window's content fixed,
              so an order-independent judge gives exactly 0. Both slopes: 95% bootstrap over cases.

    python bench/order_effects.py --home /work/runs/default1 --cases 16      # embedded judge
    python bench/order_effects.py --source labelling --cases 30 --base-url http://host:8000/v1
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interp.llm import open_llm
from interp.llm.config import LLMConfig
from interp.llm.structured import AnswerError, parse_labels
from interp.prompts import load_prompt
from interp.scoring.classifier import WindowJudge
from interp.scoring.config import ScoreConfig
from interp.scoring.registry import SCORERS
from interp.scoring.stats import binomial_interval
from interp.scoring.windows import Item
from tests.labelling import SENTENCES

ANIMALS = ("cat", "dog", "horses", "eagle", "Fish", "parrot", "fox", "Bees")  # in SENTENCES
N_BOOT = 2000


@dataclass
class Case:
    """One prompt's worth of windows: `items` in the first order, `rng` where the pipeline's
    random stream stands after drawing them (the ids of the first order come from it)."""

    name: str
    explanation: str
    items: list[Item]
    rng: random.Random


def labelling_cases(n: int, k: int, seed: int = 0) -> list[Case]:
    """n cases of k distinct sentences of tests/labelling.py, labelled 1 when they name an animal."""
    rng = random.Random(seed)
    out = []
    for c in range(n):
        chosen = rng.sample(range(len(SENTENCES)), k)
        items = [Item(SENTENCES[i], int(any(a in SENTENCES[i].split() for a in ANIMALS)), i, 0, -1)
                 for i in chosen]
        out.append(Case(f"s{c}", "mentions of animals", items, random.Random(f"{seed}:{c}")))
    return out


def home_cases(home: Path, n: int, explanations: Path | None) -> list[Case]:
    """The detection windows the default config's score stage judges for n explained latents of
    `home` (its collect, train, mine and explain artifacts), in the stage's order."""
    import pyarrow.parquet as pq

    from bench.preset_cost import _only
    from interp.artifacts import ArtifactStore
    from interp.config import load_config
    from interp.explain.stage import select_latents
    from interp.mine.examples import load_examples
    from interp.stages import build

    cfg = load_config(None, {"home": str(home)})
    store = ArtifactStore(home)
    refs = {s: store.require(s, _only(home, s)) for s in ("collect", "train")}
    mine = build(cfg, "mine", refs)  # a cache hit on a home that ran the default config
    path = explanations or _explanations_of(store.root / "explain", mine.key)
    texts = {r["latent"]: r["text"] for r in pq.read_table(path).to_pylist() if r["status"] == "ok"}
    latents = [l for l in select_latents(mine.path, cfg) if l in texts][:n]
    out = []
    for latent, examples in load_examples(mine.path, refs["collect"].path, latents).items():
        rng = random.Random(f"{cfg.score.seed}:{latent}:detection")  # as WindowJudge.asks
        items = SCORERS["detection"].items(cfg.score, examples, rng)
        if items:
            out.append(Case(str(latent), texts[latent], items, rng))
    return out


def _explanations_of(explain_root: Path, mine_key: str) -> Path:
    """explanations.parquet of the one finished explain artifact made from mine artifact
    `mine_key` (a home may hold other presets' explain artifacts beside it)."""
    found = [d for d in explain_root.iterdir() if (d / "manifest.json").is_file() and
             json.loads((d / "manifest.json").read_text())["inputs"].get("mine") == mine_key]
    if len(found) != 1:
        raise SystemExit(f"{explain_root} has {len(found)} explain artifacts of mine {mine_key}; "
                         "name one with --explanations")
    return found[0] / "explanations.parquet"


async def _labels(llm, ask) -> list[int | None]:
    """The judge's label of each window of a one-call ask, in the order shown (None: failed)."""
    r = await llm.generate(ask.messages, max_tokens=ask.max_tokens, temperature=0.0,
                           schema=ask.schema, stage="bench", purpose="order_effects")
    try:
        got = parse_labels(r.text, ask.extra["ids"], truncated=r.truncated)
    except AnswerError:
        return [None] * len(ask.items)
    return [got[i] for i in ask.extra["ids"]]


async def judge_both_orders(llm, cases: list[Case], score, seed: int = 0) -> list[dict]:
    """One record per (case, order, window): its position in that order and its label."""
    prompt = load_prompt(SCORERS["detection"].prompts(score)[0])
    if not prompt.name.endswith("_all"):
        raise ValueError("order_effects measures the one-call prompt: score.batch_size must be 'all'")
    jobs, layout = [], []
    for case in cases:
        second = random.Random(f"{seed}:{case.name}:second order")
        perm = list(range(len(case.items)))
        second.shuffle(perm)
        for order, idx, rng in ((0, list(range(len(case.items))), case.rng), (1, perm, second)):
            shown = [case.items[i] for i in idx]
            jobs.append(_labels(llm, WindowJudge._ask_all(prompt, case.explanation, shown, rng, score)))
            layout.append((case, order, idx))
    answers = await asyncio.gather(*jobs)
    return [{"case": case.name, "order": order, "position": pos, "window": i, "n": len(idx),
             "truth": case.items[i].label, "label": label}
            for (case, order, idx), labels in zip(layout, answers)
            for pos, (i, label) in enumerate(zip(idx, labels))]


def _pairs(records: list[dict]) -> dict[str, np.ndarray]:
    """Per window judged validly in both orders: case index, labels and positions in each."""
    by = {(r["case"], r["window"], r["order"]): r for r in records}
    cases = sorted({r["case"] for r in records})
    rows = [(cases.index(c), by[(c, w, 0)]["label"], by[(c, w, 1)]["label"],
             by[(c, w, 0)]["position"], by[(c, w, 1)]["position"])
            for (c, w, o) in by if o == 0 and by[(c, w, 0)]["label"] is not None
            and by.get((c, w, 1), {}).get("label") is not None]
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return {"case": a[:, 0].astype(int), "y0": a[:, 1], "y1": a[:, 2], "p0": a[:, 3], "p1": a[:, 4],
            "n_cases": len(cases)}


def _slope(y: np.ndarray, x: np.ndarray) -> float:
    """Least-squares slope of y on x (nan without spread in x)."""
    dx = x - x.mean()
    return float(dx @ (y - y.mean()) / (dx @ dx)) if dx @ dx > 0 else float("nan")


def _kappa(y0: np.ndarray, y1: np.ndarray) -> float:
    """Cohen's kappa of the two orders' labels: agreement beyond what their label rates give by
    chance (a judge that answers 1 nearly always agrees with itself nearly always; nan when
    both orders are all one label)."""
    m0, m1 = y0.mean(), y1.mean()
    chance = m0 * m1 + (1 - m0) * (1 - m1)
    return float(((y0 == y1).mean() - chance) / (1 - chance)) if chance < 1 else float("nan")


def _statistics(pairs: dict, cases: np.ndarray) -> tuple[float, float, float, float]:
    """(agreement, kappa, pooled slope, within-window slope) of the windows of the given cases
    (a case drawn twice counts twice)."""
    sel = np.concatenate([np.flatnonzero(pairs["case"] == c) for c in cases])
    y0, y1, p0, p1 = (pairs[k][sel] for k in ("y0", "y1", "p0", "p1"))
    agree = float((y0 == y1).mean())
    pooled = _slope(np.concatenate([y0, y1]), np.concatenate([p0, p1]))
    dp = p1 - p0
    within = float((y1 - y0) @ dp / (dp @ dp)) if dp @ dp > 0 else float("nan")
    return agree, _kappa(y0, y1), pooled, within


def summarize(records: list[dict], seed: int = 0) -> dict:
    """Agreement and position statistics of `judge_both_orders` records (see the module doc)."""
    pairs = _pairs(records)
    present = np.unique(pairs["case"])
    if not len(present):
        return {"windows": 0, "failed": sum(r["label"] is None for r in records)}
    point = _statistics(pairs, present)
    rng = np.random.default_rng(seed)
    boot = np.array([_statistics(pairs, rng.choice(present, len(present))) for _ in range(N_BOOT)])
    lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    per_case = {}
    for c in present:
        m = pairs["case"] == c
        k, n = int((pairs["y0"][m] == pairs["y1"][m]).sum()), int(m.sum())
        per_case[c] = (k, n)
    cases = sorted({r["case"] for r in records})
    valid = [r for r in records if r["label"] is not None]
    by_pos: dict[int, list[int]] = {}
    for r in valid:
        by_pos.setdefault(r["position"], []).append(r["label"])
    return {
        "cases": len(present), "windows": len(pairs["y0"]),
        "failed": sum(r["label"] is None for r in records),
        "accuracy": round(float(np.mean([r["label"] == r["truth"] for r in valid])), 3),
        "agreement": _ci(point[0], lo[0], hi[0]),
        "kappa": _ci(point[1], lo[1], hi[1]),
        "agreement_per_case": {cases[c]: _rate(k, n) for c, (k, n) in per_case.items()},
        "p1_by_position": {p: _rate(sum(v), len(v)) for p, v in sorted(by_pos.items())},
        "slope_per_position": _ci(point[2], lo[2], hi[2]),
        "within_window_slope": _ci(point[3], lo[3], hi[3]),
    }


def _ci(x: float, lo: float, hi: float) -> list[float]:
    return [round(float(v), 4) for v in (x, lo, hi)]


def _rate(k: int, n: int) -> dict:
    lo, hi = binomial_interval(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 3), "ci": [round(float(lo), 3), round(float(hi), 3)]}


def judge_config(base_url: str | None, model: str, threads: int | None) -> LLMConfig:
    """The judge: an OpenAI-compatible server at base_url, else the embedded llama.cpp server."""
    if base_url:
        return LLMConfig(backend="openai", base_url=base_url, model=model)
    return LLMConfig(n_threads=threads, concurrency=4, n_ctx=8192)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=("home", "labelling"), default="home")
    ap.add_argument("--home", type=Path, help="a home that ran the default config (--source home)")
    ap.add_argument("--explanations", type=Path, help="explanations.parquet (default: the "
                    "home's one explain artifact)")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--k", type=int, default=10, help="sentences per case (--source labelling)")
    ap.add_argument("--base-url", help="OpenAI-compatible judge (default: the embedded server)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.source == "home" and args.home is None:
        ap.error("--source home needs --home")
    cases = labelling_cases(args.cases, args.k, args.seed) if args.source == "labelling" \
        else home_cases(args.home, args.cases, args.explanations)
    score = ScoreConfig()
    with open_llm(judge_config(args.base_url, args.model, args.threads)) as llm:
        t0 = time.monotonic()
        records = asyncio.run(judge_both_orders(llm, cases, score, args.seed))
        wall = time.monotonic() - t0
    out = summarize(records, args.seed)
    print(json.dumps(out | {"judge": args.base_url or "embedded", "wall_s": round(wall, 1)}))
    print(f"agreement {out['agreement']} (kappa {out.get('kappa')}) over {out.get('windows')} "
          f"windows of {out.get('cases')} "
          f"cases ({out['failed']} labels failed); slope of P(1) per position "
          f"{out.get('slope_per_position')}; within-window slope {out.get('within_window_slope')}"
          f"; accuracy {out.get('accuracy')}; {wall:.0f} s")


if __name__ == "__main__":
    main()

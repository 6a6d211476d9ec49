"""Parse rate of judge answers from the embedded 135M model, with and without the JSON-schema
constraint, on the same prompts (tests/labelling.py: k numbered sentences, label each 0/1).

    python bench/structured_parse_rate.py [--n 20] [--k 10] [--modes constrained,free]

Per mode: answers that parse (`parse_labels`: valid JSON of `labels_schema(ids)`, every id
once), answers cut off at max_tokens (`max_tokens_for(schema)` for both modes), completion
tokens and wall time. 'free' sends the same prompts with llm.structured_outputs off.
"""
from __future__ import annotations

import argparse
import asyncio
import time

from interp.llm import open_llm
from interp.llm.config import LLMConfig
from interp.llm.structured import AnswerError, labels_schema, max_tokens_for, parse_labels
from tests.labelling import labelling_prompts


async def _answer(llm, messages, ids):
    schema = labels_schema(ids)
    r = await llm.generate(messages, max_tokens=max_tokens_for(schema), schema=schema)
    try:
        parse_labels(r.text, ids, truncated=r.truncated)
        return True, r, ""
    except AnswerError as err:
        return False, r, str(err)[:120]


async def _mode(llm, prompts):
    return await asyncio.gather(*[_answer(llm, m, ids) for m, ids in prompts])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--modes", default="constrained,free")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    prompts = labelling_prompts(args.n, args.k)
    for mode in args.modes.split(","):
        setting = {"constrained": "json_schema", "free": "off"}[mode]
        cfg = LLMConfig(n_threads=args.threads, concurrency=2, n_ctx=4096,
                        structured_outputs=setting)
        with open_llm(cfg) as llm:
            t0 = time.monotonic()
            results = asyncio.run(_mode(llm, prompts))
            wall = time.monotonic() - t0
        tokens = [r.completion_tokens for _, r, _ in results]
        print(f"{mode:11s} parsed {sum(ok for ok, _, _ in results)}/{len(results)}  "
              f"cut off {sum(r.truncated for _, r, _ in results)}  "
              f"completion tokens mean {sum(tokens) / len(tokens):.0f} max {max(tokens)} "
              f"(budget {max_tokens_for(labels_schema(prompts[0][1]))})  wall {wall:.0f} s",
              flush=True)
        for ok, _, why in results:
            if not ok:
                print(f"    {why}", flush=True)


if __name__ == "__main__":
    main()

"""Throughput of interp's LLM client against the embedded llama.cpp server, and the server's own best.

    python bench/llm_throughput.py [--requests 16] [--max-tokens 16] [--levels 1 2 4 8] [--threads N]

One embedded server (as many slots as the highest level) serves every measurement. At each
concurrency level the same set of distinct scorer-like prompts (distinct, so llama.cpp's prompt
cache cannot answer repeats) is sent twice: through `OpenAICompatibleLLM` (semaphore, rate
limiter, retry wrapper, ledger, openai client) and as raw concurrent httpx POSTs to
/v1/chat/completions (no client logic at all: the server's own best at that level). Prints
requests/s, prompt and completion tokens/s of each and the ratio client / raw, then the best level
of each and llama.cpp's own reported decode and prompt speeds (its `timings` field).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from interp.llm import Ledger, OpenAICompatibleLLM, llm_endpoint
from interp.llm.config import LLMConfig

TOPICS = ["rivers", "elections", "chemistry", "football", "medieval castles", "jazz", "volcanoes",
          "railways", "poetry", "banking", "insects", "astronomy", "cooking", "tennis", "glaciers",
          "printing"]


def prompts(n: int) -> list[list[dict[str, str]]]:
    """n distinct detection-style chat prompts (~90 prompt tokens each)."""
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = (f"In {1800 + 7 * i} the society for {topic} met again in the town hall, where "
                f"member number {i} read a long report about {topic} and the weather.")
        out.append([
            {"role": "system", "content": "You check whether a description of a neuron fits a "
             "text example. Answer 1 if the example contains what the description says, else 0."},
            {"role": "user", "content": f"Description: words about {topic}\n\nExample: {text}\n\n"
             "Does the example match the description? Answer 1 or 0."}])
    return out


async def via_client(cfg: LLMConfig, url: str, batch, max_tokens: int) -> tuple[float, int, int]:
    llm = OpenAICompatibleLLM(cfg, url, Ledger())
    t0 = time.perf_counter()
    rs = await asyncio.gather(*(llm.generate(m, max_tokens=max_tokens, temperature=0.0,
                                             stage="bench") for m in batch))
    wall = time.perf_counter() - t0
    await llm.aclose()
    return wall, sum(r.prompt_tokens for r in rs), sum(r.completion_tokens for r in rs)


async def raw(url: str, model: str, batch, max_tokens: int, concurrency: int):
    """Plain concurrent POSTs, `concurrency` in flight: what the server gives without a client."""
    sem = asyncio.Semaphore(concurrency)
    timings: list[dict] = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one(messages):
            async with sem:
                r = await c.post(f"{url}/chat/completions", json={
                    "model": model, "messages": messages, "max_tokens": max_tokens,
                    "temperature": 0.0})
                r.raise_for_status()
                body = r.json()
                timings.append(body.get("timings") or {})
                return body["usage"]
        t0 = time.perf_counter()
        usage = await asyncio.gather(*(one(m) for m in batch))
        wall = time.perf_counter() - t0
    return wall, sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage), timings


def _line(name: str, level: int, n: int, wall: float, p: int, c: int) -> dict:
    row = {"name": name, "level": level, "rps": n / wall, "ptps": p / wall, "ctps": c / wall}
    print(f"{name:>6} c={level}: {row['rps']:6.2f} req/s  {row['ptps']:7.1f} prompt tok/s  "
          f"{row['ctps']:6.1f} completion tok/s  ({n} requests in {wall:.1f}s)")
    return row


async def main(args) -> None:
    top = max(args.levels)
    cfg = LLMConfig(concurrency=top, n_threads=args.threads, timeout_s=600, max_retries=0)
    print(f"load average before: {os.getloadavg()[0]:.1f} (2-core machine shared with others)")
    with llm_endpoint(cfg) as url:
        await raw(url, cfg.model, prompts(2), args.max_tokens, 2)  # warm-up: load pages, caches
        results, timings = [], []
        n = args.requests
        pool = prompts(2 * n * len(args.levels))
        for i, level in enumerate(args.levels):
            # Distinct prompts per level and per arm: no arm is served from the prompt cache.
            a, b = pool[2 * i * n:(2 * i + 1) * n], pool[(2 * i + 1) * n:(2 * i + 2) * n]
            wall, p, c = await via_client(cfg.model_copy(update={"concurrency": level}), url, a,
                                          args.max_tokens)
            cl = _line("client", level, len(a), wall, p, c)
            wall, p, c, t = await raw(url, cfg.model, b, args.max_tokens, level)
            rw = _line("raw", level, len(b), wall, p, c)
            timings += t
            print(f"         ratio client/raw at c={level}: {cl['rps'] / rw['rps']:.2f}")
            results += [cl, rw]
    best = {n: max((r for r in results if r["name"] == n), key=lambda r: r["rps"])
            for n in ("client", "raw")}
    print(f"best client: {best['client']['rps']:.2f} req/s at c={best['client']['level']}; "
          f"server's best (raw): {best['raw']['rps']:.2f} req/s at c={best['raw']['level']}; "
          f"ratio {best['client']['rps'] / best['raw']['rps']:.2f}")
    dec = [t["predicted_per_second"] for t in timings if t.get("predicted_per_second")]
    pre = [t["prompt_per_second"] for t in timings if t.get("prompt_per_second")]
    if dec:
        print(f"llama.cpp timings per request (median): decode {statistics.median(dec):.1f} tok/s, "
              f"prompt {statistics.median(pre):.1f} tok/s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=16, help="requests per arm and level")
    ap.add_argument("--max-tokens", type=int, default=16, help="completion tokens per request")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--threads", type=int, default=None, help="server threads (default: all cores)")
    asyncio.run(main(ap.parse_args()))

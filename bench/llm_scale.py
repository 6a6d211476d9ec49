"""LLM side of the scale benchmark: explain + score through the real stages against a local
OpenAI-compatible server with fixed latency, next to a raw async HTTP loop on the same server.

    python bench/llm_scale.py [--latents 400] [--latency-ms 50] [--concurrency 32]

Prints req/s of the stages (explain: 1 request per latent; score: detection + fuzzing, 5 + 5
windows each, one request per window) and of the raw loop (the same number of requests, the same
concurrency, plain httpx POSTs: what the server gives with no client logic), their ratio, and the
client CPU per request (this process's CPU time / requests, the server runs in its own process).
Synthetic data: random activations and a small trained SAE, so every latent has examples.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.artifacts import ArtifactRef  # noqa: E402
from interp.config import build_config  # noqa: E402
from interp.explain import explain  # noqa: E402
from interp.llm import open_llm  # noqa: E402
from interp.mining import mine  # noqa: E402
from interp.sae.stage import train_stage  # noqa: E402
from interp.scoring import score  # noqa: E402
from tests.builders import make_shards  # noqa: E402

MSG = [{"role": "system", "content": "You judge whether a text fits a description. " * 8},
       {"role": "user", "content": "Description: years\n\nExample: in <<1945>> the war ended " * 6}]


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_server.py")),
                             "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().split()[1]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def raw_loop(url: str, n: int, concurrency: int) -> float:
    """Seconds for n plain POSTs with `concurrency` in flight."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        async def one() -> None:
            async with sem:
                r = await c.post(f"{url}/chat/completions", json={
                    "model": "m", "messages": MSG, "max_tokens": 3, "logprobs": True,
                    "top_logprobs": 5})
                r.raise_for_status()
                r.json()
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0


def setup(home: Path, url: str, latents: int, concurrency: int):
    cfg = build_config({
        "home": str(home), "corpus": {"seq_len": 33},
        "sae": {"expansion_factor": 16, "k": 8, "batch_size": 512, "epochs": 1,
                "eval_sequences": 0},
        "mine": {"window": 8, "n_top": 12, "n_quantiles": 3, "per_quantile": 4, "n_random": 12},
        "llm": {"backend": "openai", "base_url": url, "concurrency": concurrency,
                "timeout_s": 60, "shared_limit": 0},
        "explain": {"n_latents": latents, "n_examples": 6, "min_examples": 3},
        "score": {"n_positive": 5, "n_negative": 5}})
    collected = ArtifactRef("collect", "bench", make_shards(
        home / "artifacts" / "collect" / "bench", n_seq=2048, seq_len=33, d=64, per_shard=512))
    mined = mine(cfg, collected, train_stage(cfg, collected))
    return cfg, mined


def run_stages(cfg, mined) -> tuple[float, float, int]:
    """(wall s, client CPU s, requests) of explain + score with one client opened by the caller."""
    with open_llm(cfg.llm) as llm:
        c0, t0 = cpu_s(), time.perf_counter()
        exp = explain(cfg, mined, llm=llm)
        score(cfg, exp, mined, llm=llm)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        return wall, cpu, llm.ledger.totals["calls"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=400)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    proc, url = start_server(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, mined = setup(Path(tmp), url, args.latents, args.concurrency)
            wall, cpu, n = run_stages(cfg, mined)
            c0 = cpu_s()
            raw = asyncio.run(raw_loop(url, n, args.concurrency))
            raw_cpu = cpu_s() - c0
    finally:
        proc.kill()
    print(f"stages: {n} requests in {wall:.1f}s = {n / wall:.0f} req/s, "
          f"client CPU {1000 * cpu / n:.2f} ms/request")
    print(f"raw loop: {n} requests in {raw:.1f}s = {n / raw:.0f} req/s, "
          f"CPU {1000 * raw_cpu / n:.2f} ms/request")
    print(f"llm ratio={n / wall / (n / raw):.2f} client_ms={1000 * cpu / n:.2f} "
          f"latency_ms={args.latency_ms:g} concurrency={args.concurrency}")


if __name__ == "__main__":
    main()

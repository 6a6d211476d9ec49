"""LLM side of the scale benchmark: explain + score through the real stages against a local
OpenAI-compatible server with fixed latency, next to a raw async HTTP loop on the same server.

    python bench/llm_scale.py [--latents 400] [--latency-ms 50] [--concurrency 32]

Prints req/s of the stages (the default protocol: explain 1 request per latent; score:
detection + fuzzing, 5 + 5 windows each, one request per latent and scorer answered as JSON, the
shuffled control of each on up to 32 latents, and the known-answer probes) and of a raw loop
(the same number of requests, the same concurrency, no client logic: what the server
gives), their ratio, and the client CPU per request
(this process's CPU time / requests, the server runs in its own process). The raw loop is the
fastest one measured here: keep-alive HTTP/1.1 on bare asyncio streams with orjson (~0.15 ms CPU
per request); the same loop with httpx2, the openai SDK's HTTP client (~1.3 ms), is printed for
reference. Synthetic data: random activations and a small trained SAE, so every latent has
examples. explain.embed is off: MiniLM embedding the explanations (a ~6 s model load per stage
run, then ~1 ms per explanation) is not LLM client work.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.artifacts import ArtifactRef  # noqa: E402
from interp.config import build_config  # noqa: E402
from interp.llm import open_llm  # noqa: E402
from interp.llm.http import choose_transport  # noqa: E402
from interp.stages import build  # noqa: E402
from tests.builders import make_shards  # noqa: E402

MSG = [{"role": "system", "content": "You judge whether a text fits a description. " * 8},
       {"role": "user", "content": "Description: years\n\nExample: in <<1945>> the war ended " * 6}]


BODY = {"model": "m", "messages": MSG, "max_tokens": 3, "logprobs": True, "top_logprobs": 5}


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    """The fake server and its URL, once it accepts connections (it prints the URL first)."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_server.py")),
                             "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().split()[1]
    u = urlsplit(url)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((u.hostname, u.port), timeout=1).close()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"bench/fake_server.py did not listen at {url}") from None
            time.sleep(0.05)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def raw_loop(url: str, n: int, concurrency: int) -> float:
    """Seconds for n POSTs with `concurrency` in flight, each on a keep-alive connection of its
    own over bare asyncio streams (the server answers with Content-Length), JSON by orjson."""
    u = urlsplit(url)
    path = f"{u.path}/chat/completions".encode()

    async def worker(count: int) -> None:
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        for _ in range(count):
            data = orjson.dumps(BODY)
            writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer unused\r\nContent-Length: %d\r\n\r\n%s"
                         % (path, u.netloc.encode(), len(data), data))
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            orjson.loads(await reader.readexactly(length))
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency + (i < n % concurrency))
                           for i in range(concurrency)))
    return time.perf_counter() - t0


async def raw_loop_httpx2(url: str, n: int, concurrency: int) -> float:
    """The same with httpx2 (what the openai SDK sends through)."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as c:
        async def one() -> None:
            async with sem:
                r = await c.post(f"{url}/chat/completions", json=BODY)
                r.raise_for_status()
                orjson.loads(r.content)
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0


def timed(loop, url: str, n: int, concurrency: int) -> tuple[float, float]:
    """(wall s, CPU s) of one raw loop."""
    c0 = cpu_s()
    wall = asyncio.run(loop(url, n, concurrency))
    return wall, cpu_s() - c0


def setup(home: Path, url: str, latents: int, concurrency: int, transport: str = "auto"):
    cfg = build_config({
        "home": str(home), "corpus": {"seq_len": 33},
        "sae": {"expansion_factor": max(16, -(-latents // 64)), "k": 8, "batch_size": 512, "epochs": 1,
                "eval_sequences": 0},
        "mine": {"window": 8, "n_top": 12, "n_quantiles": 3, "per_quantile": 4, "n_random": 12},
        "llm": {"backend": "openai", "base_url": url, "concurrency": concurrency,
                "timeout_s": 60, "shared_limit": 0, "transport": transport},
        "explain": {"n_latents": latents, "n_examples": 6, "min_examples": 3, "embed": False},
        "score": {"n_positive": 5, "n_negative": 5}})
    collected = ArtifactRef("collect", "bench", make_shards(
        home / "artifacts" / "collect" / "bench", n_seq=2048, seq_len=33, d=64, per_shard=512))
    trained = build(cfg, "train", {"collect": collected})
    mined = build(cfg, "mine", {"collect": collected, "train": trained})
    return cfg, {"collect": collected, "train": trained, "mine": mined}


def run_stages(cfg, refs) -> tuple[float, float, int]:
    """(wall s, client CPU s, requests) of explain + score with one client opened by the caller."""
    with open_llm(cfg.llm) as llm:
        c0, t0 = cpu_s(), time.perf_counter()
        exp = build(cfg, "explain", refs, llm=llm)
        build(cfg, "score", {**refs, "explain": exp}, llm=llm)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        return wall, cpu, llm.ledger.totals["calls"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=400)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--transport", default="auto", choices=["auto", "lean", "openai"],
                    help="llm.transport of the stages")
    args = ap.parse_args()
    proc, url = start_server(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, mined = setup(Path(tmp), url, args.latents, args.concurrency, args.transport)
            wall, cpu, n = run_stages(cfg, mined)
            raw, raw_cpu = timed(raw_loop, url, n, args.concurrency)
            ref, ref_cpu = timed(raw_loop_httpx2, url, n, args.concurrency)
    finally:
        proc.kill()
    print(f"stages ({choose_transport(cfg.llm.transport, url)} transport): {n} requests in {wall:.1f}s = "
          f"{n / wall:.0f} req/s, client CPU {1000 * cpu / n:.2f} ms/request")
    print(f"raw loop (asyncio streams): {n} requests in {raw:.1f}s = {n / raw:.0f} req/s, "
          f"CPU {1000 * raw_cpu / n:.2f} ms/request")
    print(f"raw loop (httpx2, reference): {n} requests in {ref:.1f}s = {n / ref:.0f} req/s, "
          f"CPU {1000 * ref_cpu / n:.2f} ms/request")
    print(f"llm ratio={n / wall / (n / raw):.2f} client_ms={1000 * cpu / n:.2f} "
          f"latency_ms={args.latency_ms:g} concurrency={args.concurrency}")


if __name__ == "__main__":
    main()

"""The scale benchmark of interp, in one run: each figure a ratio against a reference measured
side by side, and an extrapolation to a million latents.

    python bench/scale.py            # ~25 minutes on 2 quiet cores; pieces: bench/{mine,llm,publish}_scale.py

- mine: one-pass mining at 2,304 and 65,536 latents (d = 576, 262,144 fp16 tokens) against one
  bare encoder pass over the same shards; peak RSS (bench/mine_scale.py);
- llm: explain + score through the real stages against a local OpenAI-compatible server with 0 and
  50 ms latency, against a raw async HTTP loop of the same requests at concurrency 32; the
  client's CPU per request (bench/llm_scale.py). 4,000 latents: the one-call protocol's 3
  requests a latent make 12,064 requests, the volume the per-window protocol's 21 made at 400
  (8,560); at 1,000 latents (10 s) the stages' fixed costs (starting the score stage, its
  summary: ~0.6 s) weigh on the ratio as much as the per-request work;
- publish: seconds into a catalogue of 1x and 10x the rows (bench/publish_scale.py);
- matching: exact top-1 decoder matching of two 16,384-latent SAEs (d = 576) on the CPU.
The last line is one summary, for tracking from run to run:
    scale llm_ratio=<x> client_ms=<x> mine_ratio=<x> mine_rss_mb=<x> publish_ratio=<x>
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> str:
    """Run a piece, echo its output, return it."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True,
                         text=True, check=True).stdout
    print(f"--- {script} {' '.join(args)} ({time.perf_counter() - t0:.0f}s)\n{out.rstrip()}", flush=True)
    return out


def fields(line_prefix: str, out: str) -> dict[str, str]:
    line = [ln for ln in out.splitlines() if ln.startswith(line_prefix)][-1]
    return dict(re.findall(r"(\w+)=([^\s]+)", line))


def matching_seconds(m: int = 16_384, d: int = 576) -> float:
    import torch

    sys.path.insert(0, str(HERE.parent))
    from interp.analysis.match import best_matches

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, d, generator=g), torch.randn(m, d, generator=g)
    t0 = time.perf_counter()
    best_matches(a, b)
    return time.perf_counter() - t0


def main() -> None:
    mine = fields("mine_scale", run("mine_scale.py"))
    run("llm_scale.py", "--latency-ms", "0")  # the client's own ceiling, printed for reference
    llm50 = fields("llm ratio", run("llm_scale.py", "--latency-ms", "50", "--latents", "4000"))
    pub = fields("publish_ratio", run("publish_scale.py"))
    match_s = matching_seconds()
    print(f"--- matching: 16,384 x 16,384 latents, d=576, CPU: {match_s:.1f}s")
    mine_ratio = min(float(mine["w2304_ratio"]), float(mine["w65536_ratio"]))
    per_latent = 3  # default: 1 explanation, 1 detection and 1 fuzzing request (of 5 + 5 windows)
    rps = 32 / 0.05 * float(llm50["ratio"])  # 32 in flight at 50 ms each, times our ratio
    print(f"at 10^6 latents: {per_latent * 1e6:.2g} LLM requests = {per_latent * 1e6 / rps / 3600:.1f} h "
          f"per 32-slot 50 ms server at the measured ratio (N servers: /N); exact matching of two "
          f"10^6-latent SAEs = {match_s * (1e6 / 16_384) ** 2 / 3600:.0f} CPU-hours at d=576 "
          f"(a GPU does it in minutes); mining memory is bounded by mine.memory_budget_mb")
    print(f"scale llm_ratio={llm50['ratio']} client_ms={llm50['client_ms']} "
          f"mine_ratio={mine_ratio:.2f} mine_rss_mb={mine['w65536_rss_mb']} "
          f"publish_ratio={pub['publish_ratio']}")


if __name__ == "__main__":
    main()

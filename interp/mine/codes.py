"""Mine pass over the activations: encode every token once, keep the token-level latent statistics
on the SAE's device, and spill the sparse codes to disk as (token, latent, act) triples.

Every later mining step (window maxima, exact top-k and quantiles, per-token activations of the
kept windows) re-reads this spill, never the activation shards: it is ~12 bytes per active
(token, latent) pair (k=32: 384 B per token, a twelfth of a d=576 fp16 activation), read back in
sequence-aligned chunks, so no window ever straddles two chunks.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from interp.collect.shards import ActivationShards

_FILES = (("tok", np.int32), ("lat", np.int32), ("act", np.float32))


def rss_bytes() -> int:
    """Resident set size of this process now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_memory() -> None:
    """Hand freed heap pages back to the OS: glibc keeps them (its mmap threshold grows after
    frees), which let RSS creep past mine.memory_budget_mb chunk by chunk and range by range."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class CodeSpill:
    """Append-only files of (token, latent, act) triples, bucketed by latent block so that mining
    one latent range reads only the buckets it overlaps (not the whole spill once per range).

    Within a bucket, triples are in token order; bounds[b] holds the triple offset at the end of
    every encoded chunk (chunks are whole sequences, so windows never straddle two chunks).
    """

    def __init__(self, path: Path, num_latents: int, n_buckets: int = 64):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.width = -(-num_latents // min(n_buckets, num_latents))   # latents per bucket
        self.n_buckets = -(-num_latents // self.width)
        self.bounds = [[0] for _ in range(self.n_buckets)]
        self._files = {(b, name): open(self._file(b, name), "wb")
                       for b in range(self.n_buckets) for name, _ in _FILES}

    def _file(self, bucket: int, name: str) -> Path:
        return self.path / f"{bucket:04d}.{name}"

    @property
    def n_triples(self) -> int:
        return sum(b[-1] for b in self.bounds)

    @property
    def nbytes(self) -> int:
        return self.n_triples * 12

    def append(self, tok: torch.Tensor, lat: torch.Tensor, act: torch.Tensor) -> None:
        bucket = lat // self.width
        order = torch.argsort(bucket, stable=True)  # stable: token order within each bucket
        counts = torch.bincount(bucket, minlength=self.n_buckets).tolist()
        arrays = [t[order].cpu().numpy().astype(dtype, copy=False)
                  for (_, dtype), t in zip(_FILES, (tok, lat, act))]
        start = 0
        for b, c in enumerate(counts):
            for (name, _), a in zip(_FILES, arrays):
                if c:
                    # The file's own write, not ndarray.tofile: tofile's stdio buffer lost a
                    # full disk's error for small writes, and mining went on over a spill
                    # with missing triples.
                    with self._named(b, name):
                        self._files[b, name].write(memoryview(a[start:start + c]))
            self.bounds[b].append(self.bounds[b][-1] + c)
            start += c

    @contextlib.contextmanager
    def _named(self, bucket: int, name: str) -> Iterator[None]:
        """An OSError of a spill file names the file (a full disk says where it is full)."""
        try:
            yield
        except OSError as err:
            if err.filename:
                raise
            raise OSError(err.errno, err.strerror or str(err), str(self._file(bucket, name))) from err

    def close(self) -> None:
        """Flush and close every writer (all of them, even when one fails; the first error
        is raised); call once after the last append, before reading. Closing again is a no-op."""
        first: OSError | None = None
        for (b, name), f in self._files.items():
            try:
                with self._named(b, name):
                    f.close()
            except OSError as err:
                first = first or err
        if first is not None:
            raise first

    def chunks(self, lo: int, hi: int, max_triples: int, device: str | torch.device
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(tok, lat, act) on `device` from the buckets holding latents [lo, hi) (other latents
        of those buckets included), merging encoded chunks up to max_triples (at least one)."""
        for b in range(lo // self.width, min(-(-hi // self.width), self.n_buckets)):
            bounds, i = self.bounds[b], 0
            while i < len(bounds) - 1:
                j = i + 1
                while j < len(bounds) - 1 and bounds[j + 1] - bounds[i] <= max_triples:
                    j += 1
                start, count = bounds[i], bounds[j] - bounds[i]
                if count:
                    yield tuple(torch.from_numpy(np.fromfile(
                        self._file(b, name), dtype=dtype, count=count,
                        offset=start * np.dtype(dtype).itemsize)).to(device)
                        for name, dtype in _FILES)
                i = j


@dataclass
class TokenStats:
    """Per-latent token-level statistics [m] from the encode pass."""

    count: torch.Tensor      # active tokens (long)
    sum_act: torch.Tensor    # sum of activations (float64)
    max_act: torch.Tensor    # largest activation (float32); equals the largest window maximum


def encode_chunk_bytes(num_latents: int, seq_len: int, seqs: int) -> int:
    """Memory an encoder chunk of `seqs` sequences takes while it runs: its dense [tokens,
    latents] fp32 pre-activations x3 for the temporaries (measured: 4,096 tokens x 2,304
    latents, TopK, took ~100 MiB beside 36 MiB of pre-activations)."""
    return seqs * (seq_len - 1) * num_latents * 4 * 3


def encode_chunk_sequences(num_latents: int, seq_len: int, batch_size: int,
                           encode_bytes: int) -> int:
    """Sequences encoded at once: mine.batch_size, fewer when a chunk (encode_chunk_bytes)
    would exceed encode_bytes."""
    return max(1, min(batch_size, encode_bytes // encode_chunk_bytes(num_latents, seq_len, 1)))


def iter_encoded(sae, shards: ActivationShards, chunk_seqs: int, device: str
                 ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first token index, acts [N, K], indices [N, K]) for every chunk of whole sequences, BOS
    dropped; token index t = seq_id * (seq_len - 1) + position - 1.

    Shards are read in their stored dtype (fp16 by default) and each chunk is upcast to fp32 on
    the device, so the encoder computes in fp32 whatever the storage.
    """
    t_per_seq = shards.seq_len - 1
    for i, info in enumerate(shards.shards):
        acts, _tokens = shards.load_shard(i, dtype=None)
        for b in range(0, info.n_seq, chunk_seqs):
            x = acts[b:b + chunk_seqs, 1:]
            x = x.to(device, non_blocking=True).float().reshape(-1, x.shape[-1])
            with torch.inference_mode():
                vals, idx = sae.encode(x)
            yield (info.first_seq + b) * t_per_seq, vals, idx
        del acts


def encode_pass(sae, shards: ActivationShards, spill: CodeSpill, chunk_seqs: int, device: str,
                encoded=iter_encoded, trim_above: int | None = None) -> TokenStats:
    """Encode every token once: spill its active codes, accumulate the token statistics.

    `trim_above`: an RSS (bytes) above which freed heap is handed back after a chunk. Only
    then: the pages are faulted back in by the next chunk (trimming every chunk cost ~8% of
    the pass), and untrimmed the pass held 170 MiB more than its live tensors (2,304 latents,
    64-sequence chunks; 45 MiB trimmed).
    """
    m = sae.num_latents
    count = torch.zeros(m, dtype=torch.long, device=device)
    sum_act = torch.zeros(m, dtype=torch.float64, device=device)
    max_act = torch.zeros(m, device=device)
    for first_tok, vals, idx in encoded(sae, shards, chunk_seqs, device):
        live = vals > 0  # padding slots of threshold architectures hold act 0
        tok = (torch.arange(len(vals), device=vals.device) + first_tok).unsqueeze(1)
        tok, lat, act = tok.expand_as(idx)[live], idx[live], vals[live].float()
        count += torch.bincount(lat, minlength=m)
        sum_act += torch.bincount(lat, weights=act.double(), minlength=m)
        max_act.scatter_reduce_(0, lat, act, reduce="amax")
        spill.append(tok, lat, act)
        if trim_above is not None and rss_bytes() > trim_above:
            release_memory()
    spill.close()
    return TokenStats(count.cpu(), sum_act.cpu(), max_act.cpu())

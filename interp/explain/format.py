"""What the explainer is shown: which activating and non-activating train windows, and how they
are written (activating runs marked with their strength, OpenAI's 0-10 scale)."""
from __future__ import annotations

from collections import Counter

from interp.mine.examples import Example, mark_tokens, visible, wrap_marked


def strength(act: float, scale: float) -> int:
    """Activation on the 0-10 scale relative to the latent's max (OpenAI's convention)."""
    return 0 if scale <= 0 else max(0, min(10, round(10 * act / scale)))


def format_for_explainer(examples: list[Example], scale: float) -> str:
    """Numbered examples, activating runs marked with their strength: `<<cat>>(7)`.

    Strength is the run's max activation on the 0-10 scale of the latent's max; inlining it keeps
    prompts short, which matters at ~160 prompt tokens/s on a CPU.
    """
    blocks = []
    for i, ex in enumerate(examples, 1):
        out, run, peak = [], [], 0.0
        for tok, a in (*zip(ex.tokens, ex.acts), ("", 0.0)):  # sentinel flushes the last run
            if a > 0:
                run.append(visible(tok))
                peak = max(peak, a)
                continue
            if run:
                out.append(f"{wrap_marked(''.join(run))}({strength(peak, scale)})")
                run, peak = [], 0.0
            out.append(visible(tok))
        blocks.append(f"Example {i}: {''.join(out).strip()}")
    return "\n".join(blocks)


def top_tokens(examples: list[Example], n: int = 8) -> str:
    """The most frequent activating tokens, which helps small explainers most."""
    counts = Counter(t.strip() or repr(t) for ex in examples
                     for t, a in zip(ex.tokens, ex.acts) if a > 0)
    return ", ".join(f'"{t}"' for t, _ in counts.most_common(n)) or "(none)"


def _by_quantile(examples: list[Example]) -> list[Example]:
    """Round-robin over quantiles, highest first, so any prefix spans the activation range."""
    by_q: dict[int, list[Example]] = {}
    for e in sorted(examples, key=lambda e: -e.max_act):
        by_q.setdefault(e.quantile, []).append(e)
    order = sorted(by_q, reverse=True)
    out: list[Example] = []
    while any(by_q[q] for q in order):
        out.extend(by_q[q].pop(0) for q in order if by_q[q])
    return out


def training_examples(examples: list[Example], train_set: str, n: int) -> list[Example]:
    """The activating windows an explainer may see: split 'train' only, never a held-out window.

    top: the n strongest; quantile: n spread over activation quantiles; mixed: half of each (the
    other fills in when one is short); top_iw: top windows and the importance-weighted train
    windows (SAEBench's generation set; at least half top, iw filling the rest). Returned
    strongest first.
    """
    top = [e for e in examples if e.kind == "top" and e.split == "train" and e.active]
    quant = _by_quantile([e for e in examples
                          if e.kind == "quantile" and e.split == "train" and e.active])
    if train_set == "top":
        chosen = top[:n]
    elif train_set == "quantile":
        chosen = quant[:n]
    elif train_set == "top_iw":
        iw = sorted((e for e in examples if e.kind == "iw" and e.split == "train" and e.active),
                    key=lambda e: e.rank)
        chosen = top[: max(n - len(iw), (n + 1) // 2)]
        chosen += iw[: n - len(chosen)]
    elif train_set == "mixed":
        n_top = max(n - len(quant), (n + 1) // 2)
        chosen = top[:n_top]
        chosen += quant[: n - len(chosen)]
    else:
        raise ValueError(f"explain.train_set {train_set!r} is not one of top, quantile, mixed, "
                         "top_iw")
    return sorted(chosen, key=lambda e: -e.max_act)


def training_negatives(examples: list[Example], n: int) -> list[Example]:
    """Non-activating train-split windows for contrastive prompts: hard negatives first."""
    neg = [e for e in examples if e.split == "train" and not e.active and e.kind in ("hard", "random")]
    return sorted(neg, key=lambda e: (e.kind != "hard", e.rank))[:n]


def format_negatives(examples: list[Example]) -> str:
    """Numbered windows without marks (the latent is zero on every token)."""
    if not examples:
        return "(none)"
    return "\n".join(f"Counter-example {i}: {mark_tokens(e.tokens, [False] * len(e.tokens))}"
                     for i, e in enumerate(examples, 1))

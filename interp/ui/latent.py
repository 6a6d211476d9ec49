"""Everything the latent page shows: stats, explanations with provenance and scores, shaded
examples, the activation histogram, the tokens its decoder direction promotes and suppresses,
the attention heads its decoder direction lives in (hook_z SAEs), and matched latents of other
SAEs on the same hookpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from storage.read import dicts, has_table, queries

Q = queries("browse")
KIND_LIMITS = {"top": 20, "quantile": 40, "random": 20, "hard": 20, "iw": 20}  # examples shown per kind
TOP_HEADS = 3  # heads shown per latent, largest share first


@dataclass(frozen=True)
class Token:
    text: str
    act: float
    alpha: float  # shading in [0, 1]: activation / the latent's max activation


def shade(tokens: list[str], acts: list[float], scale: float) -> list[Token]:
    """Tokens with activation-proportional shading; newlines and tabs made visible."""
    scale = scale if scale and scale > 0 else 1.0
    return [Token(t.replace("\n", "↵").replace("\t", "⇥"), float(a), max(0.0, min(1.0, a / scale)))
            for t, a in zip(tokens, acts)]


def tokens_html(tokens: list[Token]) -> Markup:
    """One span per token, shaded by --a, activation in the title (for hover); text escaped.

    Built here rather than in a Jinja loop: a latent page has ~4,000 tokens and the loop alone
    took a fifth of the 200 ms page budget.
    """
    return Markup("".join(
        f'<span class="tok{" on" if t.act > 0 else ""}" style="--a:{t.alpha:.3f}" '
        f'title="{t.act:.4g}">{escape(t.text)}</span>' for t in tokens))


def _explanations(cur, sae: str, latent: int, run: str | None = None) -> list[dict[str, Any]]:
    """The latent's explanations, newest first, each with one score run's scores: `scores` and
    `score_key`/`scored_at` of its newest run (or of `run`, a score key or prefix, when it
    scored this explanation), and `other_runs`, the rest, newest first, each shown as its own."""
    exps = dicts(cur, Q["latent_explanations"], [sae, latent])
    runs: dict[str, dict[str, dict[str, Any]]] = {}  # explanation -> score key -> run
    for s in dicts(cur, Q["latent_scores"], [sae, latent]):
        by_key = runs.setdefault(s["explanation_id"], {})
        by_key.setdefault(s["score_key"], {"score_key": s["score_key"], "scored_at": s["scored_at"],
                                           "scores": []})["scores"].append(s)
    for e in exps:
        found = list(runs.get(e["explanation_id"], {}).values())  # newest first (the query's order)
        picked = next((r for r in found if run and r["score_key"].startswith(run)), None)
        shown = picked or (found[0] if found else {"score_key": None, "scored_at": None, "scores": []})
        e.update(shown, newest=bool(found) and shown is found[0],
                 other_runs=[r for r in found if r is not shown])
    return exps


def _examples(cur, sae: str, latent: int, mine_key: str, scale: float) -> dict[str, list[dict]]:
    rows = dicts(cur, Q["latent_examples"], [sae, latent, mine_key])
    out: dict[str, list[dict]] = {k: [] for k in KIND_LIMITS}
    for r in rows:
        group = out.setdefault(r["kind"], [])
        if len(group) < KIND_LIMITS.get(r["kind"], 20):
            r["shaded"] = shade(r.pop("tokens") or [], r.pop("acts") or [], scale)
            r["html"] = tokens_html(r["shaded"])
            group.append(r)
    return out


def _matches(cur, sae: str, latent: int, hookpoint: str,
             tables: frozenset[str] | None) -> list[dict[str, Any]] | None:
    """Matched latents of other SAEs on this hookpoint (None when no matching was ever run)."""
    if not ("latent_matches" in tables if tables is not None else has_table(cur, "latent_matches")):
        return None
    return dicts(cur, Q["latent_matches"], {"sae": sae, "lat": latent, "hook": hookpoint})


def _logits(cur, sae: str, latent: int, tables: frozenset[str] | None) -> dict[str, list] | None:
    """Promoted / suppressed tokens (None when the catalogue predates the logits stage)."""
    if not ("latent_logits" in tables if tables is not None else has_table(cur, "latent_logits")):
        return None
    out: dict[str, list] = {"promoted": [], "suppressed": []}
    for r in dicts(cur, Q["latent_logits"], [sae, latent]):
        out.setdefault(r["direction"], []).append(r)
    return out if out["promoted"] or out["suppressed"] else None


def _heads(cur, sae: str, latent: int, tables: frozenset[str] | None) -> list[dict] | None:
    """The TOP_HEADS heads with the largest share of the decoder direction (hook_z SAEs only;
    None for other SAEs and for catalogues without head_shares)."""
    if not ("head_shares" in tables if tables is not None else has_table(cur, "head_shares")):
        return None
    return dicts(cur, Q["latent_heads"], [sae, latent])[:TOP_HEADS] or None


def heads_text(heads: list[dict] | None) -> str:
    """'head 7: 64%, head 3: 21%' (empty without head shares)."""
    return ", ".join(f"head {h['head']}: {h['share']:.0%}" for h in heads or [])


def latent_page(cur, sae: str, latent: int, tables: frozenset[str] | None = None,
                run: str | None = None) -> dict[str, Any] | None:
    """The latent page's data, or None if the SAE has no such latent. `tables`: the catalogue's
    table names if known (saves a catalogue lookup per page); `run`: the score run whose scores
    each explanation shows first (default: the explanation's newest)."""
    sae_row = dicts(cur, Q["latent_sae"], [sae])
    stats = dicts(cur, Q["latent_stats"], [sae, latent])
    if not sae_row or not stats:
        return None
    st = stats[0]
    return {"sae": sae_row[0], "latent": latent, "stats": st,
            "explanations": _explanations(cur, sae, latent, run), "run": run,
            "examples": _examples(cur, sae, latent, st["mine_key"], st["max_act"] or 0.0),
            "matches": _matches(cur, sae, latent, sae_row[0]["hookpoint"], tables),
            "logits": _logits(cur, sae, latent, tables),
            "heads": _heads(cur, sae, latent, tables),
            "prev": latent - 1 if latent > 0 else None,
            "next": latent + 1 if latent + 1 < (sae_row[0]["num_latents"] or 0) else None}

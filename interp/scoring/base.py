"""The scorer seam: what a scorer declares about itself, what it returns, and what it may use.

A scorer is one module: a `Scorer` subclass carrying its config section (`Config`), the prompt
files it uses, its headline metric and that metric's chance level, its LLM calls per latent and
how it turns (explanation, a latent's mined examples) into per-example predictions and per-latent
metrics (`run`). interp/scoring/registry.py lists the scorers; the score config, the key, the
presets' cost table, the catalogue's views, the UI and the exports all derive from that list.

This module never imports interp.config: the score config is composed from the scorers, so a
scorer sees its settings through `ScoreContext` (the run config, its own section).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from interp.config_base import _Strict
from interp.mine.examples import Example


@dataclass(frozen=True)
class Prediction:
    """One judged example. `prob` is the scorer's continuous score: P(1) for LLM judges, cosine
    similarity (embedding), loss reduction in nats/token (surprisal), max simulated activation / 10
    (simulation); None when the scorer has none or the answer failed."""

    seq_id: int
    start: int
    quantile: int
    label: int
    prediction: int | None
    prob: float | None

    def row(self) -> dict[str, Any]:
        return {"seq_id": self.seq_id, "start": self.start, "quantile": self.quantile,
                "label": self.label, "prediction": self.prediction, "prob": self.prob}


@dataclass
class Outcome:
    """A scorer's result for one latent: metrics (classification_metrics keys, maybe corr)."""

    predictions: list[Prediction]
    metrics: dict[str, Any]
    model: str
    prompt_hash: str | None = None
    errors: list[str] = field(default_factory=list)   # reasons of failed examples (deduplicated)


class Resources(Protocol):
    """Heavy objects a scorer may need, loaded once per stage run (interp/scoring/resources.py)."""

    lock: Any

    def embedder(self) -> Any: ...
    def subject_model(self) -> Any: ...
    def sae(self) -> Any: ...
    def token_ids(self) -> dict[int, list[int]]: ...
    def window_ids(self, e: Example) -> list[int]: ...


@dataclass
class ScoreContext:
    """What a scorer may use: the run config (its own section via `section`), the LLM client
    (None if not needed), the stage's resources, and what the calls are for (`purpose`: the
    scorer's name, `control:<scorer>` or `probe:<scorer>`, written to the calls ledger)."""

    cfg: Any  # interp.config.RunConfig (not imported: the config is composed from the scorers)
    llm: Any
    resources: Resources
    purpose: str | None = None

    def section(self, name: str) -> Any:
        return getattr(self.cfg.score, name)

    async def compute(self, fn, *args):
        """Run blocking torch work in a thread, one job at a time, so LLM requests keep flowing."""
        def locked():
            with self.resources.lock:
                return fn(*args)
        return await asyncio.to_thread(locked)


class Scorer:
    """One scoring method, described by its class attributes; `run` scores one latent.

    name: its key in `score.scorers`; Config: its config section (a strict pydantic model, one
    description per field; only an enabled scorer's section enters the score key); headline: the
    `scores` column that sums it up; needs: held-out windows it cannot score without ('positives',
    'negatives'); uses_llm / uses_subject_model: what it runs.
    """

    name: ClassVar[str]
    Config: ClassVar[type[_Strict]]
    headline: ClassVar[str] = "balanced_accuracy"
    needs: ClassVar[tuple[str, ...]] = ("positives", "negatives")
    uses_llm: ClassVar[bool] = True
    uses_subject_model: ClassVar[bool] = False
    probed: ClassVar[bool] = True  # judges the known-answer probes (interp/scoring/probes.py)
    controls: ClassVar[tuple[str, ...]] = ("shuffled", "top_tokens")  # the controls that fit it

    def prompts(self, score: Any) -> tuple[str, ...]:
        """Prompt files this scorer uses under `score` (the score config): hashed into the key."""
        return ()

    def chance(self, score: Any) -> float | None:
        """The headline metric's value for a judge that knows nothing (None: no fixed value)."""
        return 0.5

    def calls(self, score: Any) -> int | None:
        """LLM calls per latent at most (a latent with fewer windows needs fewer); None when the
        count is not a fixed number."""
        return 0

    def control_input(self, control: str, stand_in: str, examples: list[Example],
                      pool: list[Example], rng: Any) -> tuple[str, list[Example], str] | None:
        """What this scorer judges for control `control` (interp/scoring/controls.py):
        (explanation, windows, the text recorded as control_text), or None where the control
        does not fit the scorer. Default: the stand-in explanation (another latent's for
        'shuffled', the latent's most frequent activating tokens for 'top_tokens') on the
        latent's own windows. `pool`: held-out activating windows of other latents."""
        return stand_in, examples, stand_in

    def description(self) -> str:
        """The first line of the scorer module's docstring (the `scorers` table, the UI)."""
        import sys

        doc = (sys.modules[type(self).__module__].__doc__ or "").strip().splitlines()
        return doc[0] if doc else self.name

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        raise NotImplementedError


def unscorable_reason(needs: tuple[str, ...], examples: list[Example]) -> str | None:
    """Why a latent cannot be scored by a scorer that `needs` these held-out windows, or None.

    Positives are held-out quantile windows, negatives held-out non-activating ones (the
    windows the item builders draw from). Scoring without them would give, e.g., a balanced
    accuracy of None from negatives only, which dropped such latents out of the means silently.
    """
    test = [e for e in examples if e.split == "test"]
    if "positives" in needs and not any(e.kind == "quantile" for e in test):
        return ("no held-out activating windows (the latent's active windows all went to the "
                "explainer: see mine.n_top / mine.per_quantile)")
    if "negatives" in needs and not any(not e.active for e in test):
        return "no held-out non-activating windows"
    return None

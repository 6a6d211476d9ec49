"""The score stage's config: settings every scorer shares, then one section per scorer.

`ScoreConfig` is made from the scorer registry (interp/scoring/registry.py): `score.scorers`
accepts the registered names, and each scorer's `Config` is its section (`score.<name>`). A
section enters the score key only when its scorer is enabled, so tuning one scorer never
invalidates the others' results.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from interp.artifacts import stable_hash
from interp.config_base import _Strict
from interp.scoring.probes import RULES
from interp.scoring.registry import SCORERS


class ScoreSettings(_Strict):
    """Explanation scoring: settings every scorer shares (the sections follow, one per scorer)."""

    n_positive: int = Field(5, gt=0, description="Held-out activating windows per latent.")
    n_negative: int = Field(5, gt=0, description="Non-activating windows per latent.")
    batch_size: Literal["all"] | int = Field("all", description="Windows judged per LLM "
        "request by detection, fuzzing and intruder: 'all' asks once per latent and scorer, "
        "every window named by an id and the answer one JSON object (constrained to its schema "
        "where the server can; P(1) from the log-probabilities at each label); 1 asks per window "
        "and reads P(1) of the 0/1 answer; k > 1 uses the '<prompt>_batch' template and parses "
        "a list of k answers (delphi's 5, the paper preset).")
    max_tokens: int = Field(3, gt=0, description="Completion token budget per request (per window "
                            "judged when batch_size > 1; 'all' sizes it from the answer's schema).")
    logprobs: int = Field(5, ge=0, description="Top log-probabilities requested per token (0 = none).")
    seed: int = Field(0, description="Shuffling, fuzzing-mark, control and bootstrap seed.")
    min_valid_frac: float = Field(0.8, ge=0, le=1, description="A latent whose scorer got valid "
        "answers for fewer than this fraction of its windows gets status 'insufficient', no score.")
    min_per_class: int = Field(3, ge=1, description="A latent with fewer valid items than this "
        "in a class its headline metric needs (activating and non-activating windows; intruder "
        "rounds, intervention prompts) gets status 'insufficient', no score: below 3 a class's "
        "rate can only be 0, 1/2 or 1 and its 95% interval spans most of [0, 1].")
    n_bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples of the 95% intervals "
                             "still bootstrapped (run-level means over latents).")
    controls: tuple[Literal["shuffled", "top_tokens"], ...] = Field(("shuffled",),
        description="Stand-in explanations scored like the real one (README 'Controls'): another "
        "latent's explanation (shuffled: the verdict's control), the most frequent activating "
        "tokens (top_tokens: opt-in, a report-only baseline that costs the same calls again).")
    control_scorers: tuple[str, ...] | None = Field(None, description="Scorers the controls "
        "run for (each control adds that scorer's judge calls once more per controlled latent); "
        "None = every configured scorer, each with the control design that fits it (stand-in "
        "explanations; windows of other latents for intruder, which reads no explanation).")
    control_latents: int | None = Field(32, gt=0, description="Run the controls on a seeded "
        "sample of this many scored latents (the lift is paired over them); None = all. With 32 "
        "the one-sided test detects a true lift of 0.1 in balanced accuracy (5 + 5 windows) 84% "
        "of the time (24 latents: 71%; 8: 25%). Each controlled latent costs each control its "
        "scorer's judge calls again.")
    probes: tuple[Literal[tuple(RULES)], ...] = Field(tuple(RULES), description="Known-answer "
        "probes scored by every scorer that can judge them, before any score is believed "
        "(interp/scoring/probes.py): rules built from the run's held-out corpus, e.g. the word "
        "'the', digits, capitalised words, the most frequent proper noun. () = none.")
    probe_windows: int = Field(5, gt=0, description="Held-out windows where a probe's rule "
        "holds, and as many where it does not, per probe.")

    @field_validator("scorers", check_fields=False)
    @classmethod
    def _nonempty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("score.scorers must name at least one scorer")
        if len(set(v)) != len(v):
            raise ValueError("score.scorers lists a scorer twice")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v: str | int) -> str | int:
        if v != "all" and v < 1:
            raise ValueError("score.batch_size must be 'all' or a whole number >= 1")
        return v

    @field_validator("control_scorers")
    @classmethod
    def _known_control_scorers(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if bad := [s for s in v or () if s not in SCORERS]:
            raise ValueError(f"score.control_scorers: unknown scorer(s) {bad}")
        return v

    def controlled_scorers(self) -> tuple[str, ...]:
        """The configured scorers that the controls run for."""
        chosen = self.scorers if self.control_scorers is None else self.control_scorers
        return tuple(s for s in chosen if s in self.scorers)

    def settings_hash(self) -> str:
        """A short hash of key_settings(): recorded on every score row."""
        return stable_hash(self.key_settings())

    def key_settings(self) -> dict[str, Any]:
        """What can change the scores: shared settings and the enabled scorers' sections."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, BaseModel):
                if name in self.scorers:
                    out[name] = value.model_dump(mode="json", exclude=set(value.NOT_IN_KEY))
            else:
                out[name] = value if not isinstance(value, tuple) else list(value)
        return out


def _scorer_list() -> str:
    return "; ".join(f"{name}: {s.description()}" for name, s in SCORERS.items())


ScoreConfig = create_model(
    "ScoreConfig", __base__=ScoreSettings,
    __doc__="Explanation scoring: the shared settings, then one section per registered scorer.",
    scorers=(tuple[Literal[tuple(SCORERS)], ...], Field(("detection", "fuzzing"), description=(
        "Scorers to run (README 'Scorers' gives each one's cost). " + _scorer_list()))),
    **{name: (s.Config, Field(default_factory=s.Config, description=(s.Config.__doc__ or "").strip()))
       for name, s in SCORERS.items()})

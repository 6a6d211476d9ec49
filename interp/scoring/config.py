"""The score stage's config: settings every scorer shares, then one section per scorer.

Adding a scorer is one module (interp/scoring/), one registry entry and one section class here
(plus its field on ScoreConfig); a section enters the score key only when its scorer is enabled.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from interp.config_base import _Strict


class DetectionConfig(_Strict):
    """Detection: the judge says whether each held-out window fits the explanation."""

    prompt: str = Field("score_detection", description="Template ('<prompt>_batch' when "
                        "score.batch_size > 1).")


class FuzzingConfig(_Strict):
    """Fuzzing: the judge says whether a window's marked tokens fit the explanation."""

    prompt: str = Field("score_fuzzing", description="Template ('<prompt>_batch' when "
                        "score.batch_size > 1).")


class EmbeddingScorerConfig(_Strict):
    """Embedding: MiniLM similarity of the explanation and each window (no LLM)."""

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset({"device"})
    device: str | None = Field(None, description="Device of the MiniLM embedder; None = "
                               "model.device.")


class SurprisalConfig(_Strict):
    """Surprisal: how much the explanation, as a prefix, lowers the subject model's loss."""

    prompt: str = Field("score_surprisal", description="Prefix template ($explanation); its "
                        "USER text precedes each window.")
    neutral: str = Field("some text", description="What fills the prefix instead of the "
                         "explanation for the baseline loss.")


class SimulationConfig(_Strict):
    """Simulation (OpenAI's all-at-once): the judge gives every token a 0-9 activation."""

    prompt: str = Field("score_simulation_all", description="Template ($explanation, $tokens).")
    logprobs: int = Field(10, ge=0, description="Top log-probabilities per answer token: the "
        "simulated value is the expected digit over them (0 = the digit as written).")


class SimulationWordsConfig(_Strict):
    """Word-list simulation: the LLM lists the words it expects the latent to fire on."""

    prompt: str = Field("score_simulation", description="Template.")
    max_tokens: int = Field(48, gt=0, description="Completion budget of an answer (the listed "
                            "words with strengths).")


class IntruderConfig(_Strict):
    """Intruder: the judge picks the one non-activating window among activating ones."""

    prompt: str = Field("score_intruder", description="Template.")
    n_rounds: int = Field(5, gt=0, description="Rounds (one judge call each) per latent.")
    n_shown: int = Field(4, gt=0, description="Activating windows shown with the intruder.")
    max_tokens: int = Field(4, gt=0, description="Completion budget (the intruder's number).")


class SAEBenchScorerConfig(_Strict):
    """SAEBench's autointerp scoring: the judge lists which of a shuffled set of held-out strong,
    importance-weighted and random windows the latent fires on (one call per latent)."""

    prompt: str = Field("score_saebench", description="Template ($explanation, $examples, $n, "
                        "$example: a sample answer).")
    n_top: int = Field(2, gt=0, description="Held-out strong windows shown (mine.n_top_test).")
    n_iw: int = Field(2, ge=0, description="Held-out importance-weighted windows shown "
                      "(mine.n_iw_test).")
    n_random: int = Field(10, gt=0, description="Random non-activating windows shown (the test "
                          "half of mine.n_random).")
    max_tokens: int | None = Field(None, gt=0, description="Completion budget; None = 2 per "
                                   "window + 5 (SAEBench's).")


class InterventionConfig(_Strict):
    """Intervention (the paper's): steer along the latent; how much likelier does the explanation
    become after steered than after clean continuations?"""

    prompt: str = Field("score_intervention_lm", description="Template ($text = a continuation) "
                        "after which the explanation's log-probability is read.")
    n_prompts: int = Field(4, gt=0, description="Held-out non-activating windows whose first "
                           "tokens prompt clean and steered generation (2 judge calls each).")
    prompt_tokens: int = Field(8, gt=0, description="Window tokens per prompt (after BOS).")
    new_tokens: int = Field(16, gt=0, description="Greedy tokens generated per prompt.")
    target_kl: float = Field(0.5, gt=0, description="Steering strength is bisected until the "
                             "mean next-token KL(clean || steered) over the prompts is this many nats.")
    bisection_steps: int = Field(8, ge=0, description="Bisection steps of the calibration.")


class InterventionJudgeConfig(InterventionConfig):
    """Judge-based intervention: the judge LLM tells steered from clean continuations."""

    prompt: str = Field("score_intervention", description="Template for judging clean and "
                        "steered continuations (2 judge calls per prompt).")


class ScoreConfig(_Strict):
    """Explanation scoring: settings every scorer shares, then one section per scorer.

    A scorer's section enters the score stage's cache key only when the scorer is enabled, so
    tuning one scorer never invalidates the others' results.
    """

    scorers: tuple[Literal["detection", "fuzzing", "embedding", "surprisal", "simulation",
                           "intervention", "intruder", "simulation_words",
                           "intervention_judge", "saebench"], ...] = Field(("detection", "fuzzing"),
        description="Scorers to run (README 'Scorers' gives each one's cost): detection, fuzzing, "
        "embedding (MiniLM, no LLM), surprisal (subject model, no LLM), simulation (OpenAI's), "
        "simulation_words (word list, for small judges), intervention "
        "(the paper's: steers the subject model), intervention_judge (a judge tells steered "
        "from clean text), intruder (no explanation: is the latent coherent?), saebench "
        "(SAEBench's autointerp score: pick the activating windows among random ones).")
    n_positive: int = Field(5, gt=0, description="Held-out activating windows per latent.")
    n_negative: int = Field(5, gt=0, description="Non-activating windows per latent.")
    batch_size: int = Field(1, gt=0, description="Windows judged per LLM request. 1 asks for "
        "log-probabilities of the 0/1 answer (gives AUC; best for small judges and prefix caching); "
        "more uses the '<prompt>_batch' template and parses a list of answers.")
    max_tokens: int = Field(3, gt=0, description="Completion token budget per request (per window "
                            "judged when batch_size > 1).")
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
    controls: tuple[Literal["shuffled", "top_tokens"], ...] = Field(("shuffled", "top_tokens"),
        description="Stand-in explanations scored like the real one (README 'Controls'): another "
        "latent's explanation (shuffled), the most frequent activating tokens (top_tokens).")
    control_scorers: tuple[str, ...] = Field(("detection",), description="Scorers the "
        "controls run for (each control adds that scorer's judge calls once more).")
    control_latents: int | None = Field(32, gt=0, description="Run the controls on a seeded "
        "sample of this many scored latents (the lift is paired over them); None = all. With 32 "
        "the one-sided test detects a true lift of 0.1 in balanced accuracy (5 + 5 windows) 84% "
        "of the time (the default run's 24 latents, all controlled: 71%; 8: 25%). Each "
        "controlled latent costs each control its scorers' judge calls again (detection, two "
        "controls: +20 calls).")
    detection: DetectionConfig = DetectionConfig()
    fuzzing: FuzzingConfig = FuzzingConfig()
    embedding: EmbeddingScorerConfig = EmbeddingScorerConfig()
    surprisal: SurprisalConfig = SurprisalConfig()
    simulation: SimulationConfig = SimulationConfig()
    simulation_words: SimulationWordsConfig = SimulationWordsConfig()
    intervention: InterventionConfig = InterventionConfig()
    intervention_judge: InterventionJudgeConfig = InterventionJudgeConfig()
    intruder: IntruderConfig = IntruderConfig()
    saebench: SAEBenchScorerConfig = SAEBenchScorerConfig()

    @field_validator("scorers")
    @classmethod
    def _nonempty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("score.scorers must name at least one scorer")
        if len(set(v)) != len(v):
            raise ValueError("score.scorers lists a scorer twice")
        return v

    @field_validator("control_scorers")
    @classmethod
    def _known_control_scorers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = cls.model_fields["scorers"].annotation.__args__[0].__args__
        if bad := [s for s in v if s not in known]:
            raise ValueError(f"score.control_scorers: unknown scorer(s) {bad}")
        return v

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

"""The train stage's config section (`sae`): the SAE recipe, or an SAE trained elsewhere.

Architecture names, their description and their specific checks come from the architecture
registry (`interp.sae.arch.registry`); this module never imports `interp.config`, which composes
RunConfig from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from interp.config_base import _Strict
from interp.sae.arch.base import Architecture
from interp.sae.arch.registry import ARCHITECTURES

ArchitectureName = Literal[tuple(ARCHITECTURES)]  # type: ignore[valid-type]  # the registry's names
# Fields that only some architectures use (each architecture's `options` names those it accepts).
ARCH_OPTIONS = tuple(sorted(set().union(*(arch.options for arch in ARCHITECTURES.values()))))
_ARCH_HELP = "SAE architecture. " + " ".join(f"'{name}': {arch.summary}."
                                               for name, arch in ARCHITECTURES.items())


class SAEConfig(_Strict):
    """SAE recipe (or an SAE trained elsewhere, via `path`)."""

    architecture: ArchitectureName = Field("topk", description=_ARCH_HELP)
    gsae_beta: float = Field(1.0, ge=0, description="gsae only: weight of a latent's downstream "
                             "effect |W_dec dL/dx| (divided by its batch mean) in the training "
                             "selection score z * (1 + beta * effect); 0 = plain TopK.")
    path: Path | None = Field(None, description="Label an SAE trained elsewhere (sparsify or SAELens "
                              "directory) instead of training one.")
    expansion_factor: int = Field(4, gt=0, description="Latents = expansion_factor x d_model.")
    k: int = Field(32, gt=0, description="Active latents per token (TopK and batch variants). "
                   "For 'neurons': each token keeps its k largest positive neuron activations "
                   "(top-k sparsified neurons); k >= the MLP width keeps every positive one.")
    lr: float | None = Field(None, gt=0, description="Learning rate; None scales 2e-4/sqrt(width/2^14).")
    batch_size: int = Field(1024, gt=0, description="Tokens per optimiser step.")
    epochs: int = Field(4, gt=0, description="Passes over the collected activations.")
    auxk_alpha: float = Field(1 / 32, ge=0, description="Weight of the AuxK loss on dead latents.")
    dead_tokens: int = Field(20_000, gt=0, description="A latent not firing for this many tokens is dead.")
    sparsity_coeff: float | None = Field(None, ge=0, description="L1 (relu) or L0 (jumprelu) "
                                         "penalty weight; None = the architecture's default.")
    aux_zipf: bool = Field(False, description="AuxK on latents firing below a Zipf-law frequency "
                           "for their rank, not only dead ones (sparse architectures).")
    normalize_activations: Literal["none", "unit_mean_squared_norm"] = Field(
        "none", description="Scale activations to unit mean squared norm while training; the "
        "factor is folded into the saved weights and recorded in cfg.json.")
    lr_warmup_steps: int | None = Field(None, ge=0, description="Linear warm-up steps; None = 5% "
                                        "of training, at most 1000.")
    lr_decay_frac: float = Field(0.2, ge=0, le=1, description="Final fraction of steps over "
                                 "which the lr decays linearly to 0.")
    checkpoint_every: int = Field(0, ge=0, description="Save a resumable checkpoint every N steps "
                                  "(0 = never).")
    transcode_target: str | None = Field(None, description="Hookpoint whose activations are the "
                                         "target (transcoder); None = autoencode model.hookpoint.")
    skip_connection: bool = Field(False, description="Transcoders only: add a learnt linear map "
                                  "of the input (W_skip, zero-initialised) to the output, so "
                                  "latents only model what a linear map cannot.")
    threads: int | None = Field(1, gt=0, description="torch intra-op threads while training "
                                "(restored after); None = leave torch's setting. 1 is fastest on "
                                "a 2-core CPU (measured 12.5k vs 2.7k tokens/s under contention).")
    holdout_every: int = Field(20, ge=0, description="Every n-th sequence is held out for the "
                               "reported FVU (0 = evaluate on training tokens).")
    eval_sequences: int = Field(32, ge=0, description="Held-out sequences for the CE-loss-recovered "
                                "and KL evaluation with the SAE spliced into the model (0 = skip).")
    seed: int = Field(0, description="Initialisation and shuffling seed.")
    device: str | None = Field(None, description="Training device; None uses model.device.")

    @property
    def arch(self) -> Architecture:
        """The configured architecture (from the registry)."""
        return ARCHITECTURES[self.architecture]

    @property
    def sparsity_penalty(self) -> float:
        """The effective sparsity penalty weight: sae.sparsity_coeff, else the architecture's
        default (0 for architectures whose sparsity is sae.k)."""
        value = self.sparsity_coeff
        return self.arch.default_sparsity_coeff if value is None else float(value)

    @model_validator(mode="after")
    def _consistent(self) -> SAEConfig:
        for field in ARCH_OPTIONS:
            default = type(self).model_fields[field].default
            if getattr(self, field) != default and field not in self.arch.options:
                users = [name for name, arch in ARCHITECTURES.items() if field in arch.options]
                raise ValueError(f"sae.{field} applies to sae.architecture {', '.join(users)}, "
                                 f"not {self.architecture!r}: leave it at its default ({default})")
        if self.skip_connection and not self.transcode_target:
            raise ValueError("sae.skip_connection needs sae.transcode_target: an autoencoder with "
                             "a linear skip would learn the identity")
        self.arch.check(self)
        return self

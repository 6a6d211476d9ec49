"""MLP neurons as latents (Paulo et al. 2024's baseline): not learnt, built from the subject
model's MLP by `interp.sae.neurons`. The encoder is the identity, so pre-activations are the neuron
activations; each token keeps its k largest, and only positive ones (a code is an activation > 0;
see interp.sae.neurons on signed neurons)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from interp.hooks import neurons_hookpoint_error
from interp.sae.arch.base import Architecture, Codes, SAESettings, SparseCoder, dense_to_padded


@dataclass(frozen=True)
class Neurons(Architecture):
    """The MLP's own neurons, top-k sparsified; a transcoder to the MLP's output."""

    name: str = "neurons"
    summary: str = ("no SAE: the MLP's own neurons at model.hookpoint blocks.<L>.mlp.hook_post "
                    "(identity encoder, decoder = the MLP's output weights W_out; nothing "
                    "trained), the baseline SAE latents are compared with")
    trainable = False

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        raise ValueError("sae.architecture 'neurons' is built from the model's MLP weights, not "
                         "trained (interp.sae.neurons.build_neurons)")

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = sae.pre_acts(x)
        if sae.k >= pre.shape[1]:  # every neuron: the positive ones, padded
            return dense_to_padded(pre.clamp_min(0))
        values, indices = pre.topk(sae.k, dim=1, sorted=False)
        return values.clamp_min(0), indices

    def check(self, cfg: SAESettings) -> None:
        """Options that mean nothing for MLP neurons, which are read from the model, not trained."""
        if cfg.path is not None:
            raise ValueError("sae.path and sae.architecture 'neurons' exclude each other: neurons "
                             "are read from the subject model's MLP, not from an SAE directory")
        if cfg.transcode_target or cfg.skip_connection:
            raise ValueError("sae.transcode_target / sae.skip_connection do not apply to "
                             "'neurons': their output hookpoint is the MLP's own (hook_mlp_out)")
        if cfg.normalize_activations != "none":
            raise ValueError("sae.normalize_activations does not apply to 'neurons' (nothing is "
                             "trained): leave it 'none'")

    def hookpoint_error(self, hookpoint: str) -> str | None:
        return neurons_hookpoint_error(hookpoint)

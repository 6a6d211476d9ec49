"""The SAE architectures by name: the one list of them. `SAEConfig.architecture`'s allowed values
and description, the model, the trainer and the SAELens format all read it from here.

A new architecture is a module in this package and its line below (import and instance).
Order is the order of sae.architecture's documented values.
"""
from __future__ import annotations

from interp.sae.arch.base import Architecture
from interp.sae.arch.batchtopk import BatchTopK
from interp.sae.arch.feature_choice import FeatureChoice
from interp.sae.arch.gsae import GradientTopK
from interp.sae.arch.jumprelu import JumpReLU
from interp.sae.arch.neurons import Neurons
from interp.sae.arch.relu import ReLU
from interp.sae.arch.topk import TopK

ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in [
    TopK(),
    BatchTopK(),
    ReLU(),
    JumpReLU(),
    FeatureChoice(),
    BatchTopK("mutual_choice", "batchtopk's selection under the name of Ayonrinde 2024's framing, "
              "which pairs it with sae.aux_zipf"),
    GradientTopK(),
    Neurons(),
]}
TRAINABLE = frozenset(name for name, arch in ARCHITECTURES.items() if arch.trainable)


def get_architecture(name: str) -> Architecture:
    """The architecture called `name`; ValueError listing the known ones otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is not one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]

"""Sparse autoencoders: architectures, the train stage, evaluation, and save/load in sparsify's
(native) and SAELens's formats."""
from interp.sae.arch.registry import ARCHITECTURES
from interp.sae.eval import eval_downstream, evaluate
from interp.sae.io import check_compatible, detect_format, load_any_sae, load_sae, save_sae
from interp.sae.model import SAE, ForwardOutput
from interp.sae.saelens import load_saelens, save_saelens
from interp.sae.train import geometric_median, train
from interp.sae.trainer import Trainer

__all__ = ["ARCHITECTURES", "SAE", "ForwardOutput", "Trainer", "check_compatible",
           "detect_format", "eval_downstream", "evaluate", "geometric_median", "load_any_sae",
           "load_saelens", "load_sae", "save_saelens", "save_sae", "train"]

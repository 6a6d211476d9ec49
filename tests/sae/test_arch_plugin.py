"""A new SAE architecture is one module plus its line in the registry: a toy one, added to a copy of
the source tree and nothing else, is accepted by the config, trained by the train stage, saved,
loaded back with identical outputs, and refused by the SAELens export with its name."""
from __future__ import annotations

import json

from tests.builders import make_shards
from tests.plugin_tree import copy_tree, edit, run_python

TOY = '''"""Toy architecture: each token keeps its k largest pre-activations by magnitude, signed."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from interp.sae.arch.base import Architecture, Codes, SparseCoder


@dataclass(frozen=True)
class SignedTopK(Architecture):
    name: str = "topk_signed"
    summary: str = "each token keeps its k largest pre-activations by magnitude, with their sign"

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        pre = sae.dense_pre_acts(x)
        indices = pre.detach().abs().topk(sae.k, dim=1, sorted=False).indices
        return Codes(pre.gather(1, indices), indices, x.new_zeros(()))

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = sae.pre_acts(x)
        indices = pre.abs().topk(sae.k, dim=1, sorted=False).indices
        return pre.gather(1, indices), indices
'''

CHECK = '''
import json, sys
from pathlib import Path

import torch

from interp.artifacts import ArtifactRef
from interp.collect.shards import ActivationShards
from interp.config import build_config
from interp.sae import evaluate, load_sae, save_sae, save_saelens
from interp.sae.calibrate import HELDOUT_TOKENS
from interp.sae.config import SAEConfig
from interp.sae.data import heldout_tokens
from interp.stages import build

torch.set_num_threads(1)  # as training ran: the recomputed metrics must match bit for bit
home, collect = Path(sys.argv[1]), Path(sys.argv[2])
cfg = build_config({"home": str(home), "sae": {
    "architecture": "topk_signed", "expansion_factor": 2, "k": 2, "batch_size": 32,
    "epochs": 2, "eval_sequences": 0}})
out = {"description": SAEConfig.model_fields["architecture"].description}
try:
    SAEConfig(architecture="topk_signed", aux_zipf=True)
except ValueError as err:
    out["option_error"] = str(err)
ref = build(cfg, "train", {"collect": ArtifactRef("collect", "c0ffee", collect)})
metrics = json.loads((ref.path / "metrics.json").read_text())
sae = load_sae(ref.path)
x, y = heldout_tokens(ActivationShards(collect), cfg.sae.holdout_every, HELDOUT_TOKENS)
again = load_sae(save_sae(sae, home / "again"))
acts, idx = sae.encode(x)
out.update(architecture=sae.cfg["architecture"], fvu=metrics["fvu"], l0=metrics["l0"],
           fvu_loaded=evaluate(sae, x, y)["fvu"], negative_codes=bool((acts < 0).any()),
           same_after_save=all(torch.equal(a, b) for a, b in zip((acts, idx), again.encode(x))))
try:
    save_saelens(sae, home / "lens")
except ValueError as err:
    out["saelens_error"] = str(err)
print(json.dumps(out))
'''


def test_toy_architecture_needs_one_module_and_its_registry_line(tmp_path):
    tree = copy_tree(tmp_path)
    (tree / "interp/sae/arch/toy.py").write_text(TOY)
    registry = tree / "interp/sae/arch/registry.py"
    edit(registry, "from interp.sae.arch.topk import TopK\n",
         "from interp.sae.arch.topk import TopK\nfrom interp.sae.arch.toy import SignedTopK\n")
    edit(registry, "    Neurons(),\n", "    Neurons(),\n    SignedTopK(),\n")
    collect = make_shards(tmp_path / "home" / "artifacts" / "collect" / "c0ffee", n_seq=60, d=6)
    done = run_python(tree, CHECK, str(tmp_path / "home"), str(collect))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "'topk_signed': each token keeps its k largest" in out["description"]
    assert "sae.aux_zipf" in out["option_error"] and "'topk_signed'" in out["option_error"]
    assert out["architecture"] == "topk_signed" and out["negative_codes"]  # its own rule encodes
    assert 0 < out["fvu"] < 1.5 and out["l0"] > 0, out
    assert out["fvu_loaded"] == out["fvu"] and out["same_after_save"]
    assert "'topk_signed' has no SAELens equivalent" in out["saelens_error"]

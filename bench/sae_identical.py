"""Train every SAE architecture in two source trees at one seed and compare the results bit for bit.

    python bench/sae_identical.py BASE_TREE NEW_TREE [--work DIR]

A refactor of interp/sae must not change numerics: same seeds, same weights. Synthetic shards are
written once (tests/builders.py `make_shards`, plus a loss-gradient tensor for the g-SAE and a
second hookpoint for a transcoder); each tree then trains every recipe below in a subprocess with
PYTHONPATH=<tree> (and the tree as working directory: `python -c` puts the working directory
first on sys.path) and writes sae.safetensors, cfg.json, metrics.json and its SAELens export, plus
an MLP-neurons dictionary from stand-in weights. Prints one line per recipe and exits 1 if any
tensor, config or metric (timings aside) differs.

A base tree of the branch point: git archive <commit> | tar -x -C /tmp/base
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HOOK = "blocks.0.hook_resid_post"
TARGET = "blocks.1.hook_resid_post"
BASE = {"expansion_factor": 4, "k": 3, "batch_size": 64, "epochs": 2, "dead_tokens": 200,
        "seed": 3}
RECIPES = {
    "topk": {},
    "batchtopk": {"architecture": "batchtopk"},
    "mutual_choice_zipf": {"architecture": "mutual_choice", "aux_zipf": True},
    "feature_choice": {"architecture": "feature_choice"},
    "relu": {"architecture": "relu"},
    "relu_coeff": {"architecture": "relu", "sparsity_coeff": 0.05},
    "jumprelu_norm": {"architecture": "jumprelu",
                      "normalize_activations": "unit_mean_squared_norm"},
    "gsae": {"architecture": "gsae", "gsae_beta": 2.0},
    "topk_transcoder_skip": {"transcode_target": TARGET, "skip_connection": True},
}
TIMINGS = {"train_seconds", "tokens_per_s"}
NEURON_HOOK = "blocks.0.mlp.hook_post"

# Runs inside each tree; SAEConfig moved from interp.config to interp.sae.config, shards.py from
# interp/ to interp/collect/.
WORKER = """
import json, sys
from pathlib import Path
import interp
assert Path(interp.__file__).is_relative_to(sys.argv[4]), (interp.__file__, sys.argv[4])
try:
    from interp.sae.config import SAEConfig
except ImportError:
    from interp.config import SAEConfig
try:
    from interp.collect.shards import ActivationShards
except ImportError:
    from interp.shards import ActivationShards
from interp.sae import load_sae, save_saelens, train

shards, out, recipes = ActivationShards(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
for name, recipe in recipes.items():
    train(SAEConfig(**recipe), shards, out / name)
    sae = load_sae(out / name)
    if not sae.transcode:
        save_saelens(sae, out / name / "saelens")

# MLP neurons (built, not trained) from a seeded stand-in W_out [d_mlp, d_model], b_out
import torch
from interp.sae.neurons import build_neurons
gen = torch.Generator().manual_seed(5)
weights = (torch.randn(8, 6, generator=gen), torch.randn(6, generator=gen))
metrics = build_neurons(3, ActivationShards(sys.argv[5]), out / "neurons", lambda: weights,
                        holdout_every=20)
(out / "neurons" / "metrics.json").write_text(json.dumps(metrics))
"""


def write_data(work: Path) -> tuple[Path, Path]:
    """make_shards' random activations, plus grad.<hook> and acts.<target> in every shard; and
    shards at an MLP's hook_post for the neurons dictionary."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.builders import make_shards

    path = make_shards(work / "collect", n_seq=160, seq_len=17, d=8, per_shard=32, hookpoint=HOOK)
    gen = torch.Generator().manual_seed(11)
    for f in sorted(path.glob("shard-*.safetensors")):
        t = load_file(str(f))
        t[f"grad.{HOOK}"] = torch.randn(t["acts"].shape, generator=gen)
        t[f"acts.{TARGET}"] = torch.randn(t["acts"].shape, generator=gen)
        save_file(t, str(f))
    return path, make_shards(work / "mlp", n_seq=60, seq_len=17, d=8, hookpoint=NEURON_HOOK)


def train_in(tree: Path, data: tuple[Path, Path], out: Path) -> None:
    recipes = {name: {**BASE, **r} for name, r in RECIPES.items()}
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # cwd = the tree: `python -c` puts the working directory first on sys.path, before PYTHONPATH
    done = subprocess.run([sys.executable, "-c", WORKER, str(data[0]), str(out),
                           json.dumps(recipes), str(tree), str(data[1])],
                          env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"training in {tree} failed:\n{done.stderr[-3000:]}")


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two output directories of one recipe."""
    out = []
    for weights in ("sae.safetensors", "saelens/sae_weights.safetensors"):
        if not (a / weights).exists():
            continue
        ta, tb = load_file(str(a / weights)), load_file(str(b / weights))
        if ta.keys() != tb.keys():
            out.append(f"{weights}: tensors {sorted(ta)} vs {sorted(tb)}")
        out += [f"{weights}: {k}" for k in ta.keys() & tb.keys() if not torch.equal(ta[k], tb[k])]
    for name in ("cfg.json", "saelens/cfg.json", "metrics.json"):
        if not (a / name).exists():
            continue
        ja, jb = (json.loads((d / name).read_text()) for d in (a, b))
        out += [f"{name}: {k} {ja.get(k)!r} vs {jb.get(k)!r}" for k in sorted(ja.keys() | jb.keys())
                if k not in TIMINGS and ja.get(k) != jb.get(k)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sae_identical-"))
    data = write_data(work)
    for label, tree in (("base", args.base), ("new", args.new)):
        train_in(tree.resolve(), data, work / label)
    bad = 0
    for name in [*RECIPES, "neurons"]:
        diff = differences(work / "base" / name, work / "new" / name)
        bad += bool(diff)
        print(f"{name:22s} {'identical' if not diff else 'DIFFERS: ' + '; '.join(diff[:4])}")
    n = len(RECIPES) + 1
    print(f"{n - bad}/{n} recipes bit-identical (outputs under {work})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""eval_downstream through a model-agnostic callable, on a tiny random torch model."""
from __future__ import annotations

import torch
from torch import nn

from interp.sae import SAE, eval_downstream


class TinyLM(nn.Module):
    """embedding -> hookpoint -> MLP -> logits."""

    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        self.emb, self.mlp = nn.Embedding(vocab, d), nn.Sequential(nn.Linear(d, 32), nn.ReLU(),
                                                                     nn.Linear(32, vocab))

    def run(self, tokens, hook=None):
        h = self.emb(tokens)
        if hook is not None:
            h = hook(h)
        return self.mlp(h)


def _exact_sae(d: int = 8) -> SAE:
    """A TopK SAE that reconstructs exactly: latents +e_i and -e_i, k = d."""
    sae = SAE(d, 2 * d, d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
    return sae


def test_eval_downstream_exact_and_random_saes():
    torch.manual_seed(0)
    model, tokens = TinyLM(), torch.randint(0, 20, (4, 12))
    exact = eval_downstream(model.run, _exact_sae(), tokens)
    assert abs(exact["ce_spliced"] - exact["ce_clean"]) < 1e-5
    assert abs(exact["ce_loss_recovered"] - 1) < 1e-4 and exact["kl"] < 1e-6
    noisy = eval_downstream(model.run, SAE(8, 16, 2, generator=torch.Generator().manual_seed(1)),
                            tokens)
    # an untrained model gives no meaningful recovered fraction; the splice must still bite
    assert abs(noisy["ce_spliced"] - noisy["ce_clean"]) > 1e-4 and noisy["kl"] > 1e-6
    assert set(noisy) == {"ce_clean", "ce_spliced", "ce_zero", "ce_loss_recovered", "kl"}

"""Guards against non-finite numbers (NaN, inf): they fail loudly where they enter a stage, so a
stage never caches them as a finished artifact and later stages never see them."""
from __future__ import annotations

import torch


class NonFiniteError(ValueError):
    """A tensor that must be finite holds NaN or inf values; the message says which and where."""


def require_finite(t: torch.Tensor, what: str, hint: str = "") -> None:
    """Raise NonFiniteError naming `what` (and `hint`, what to do) if t holds NaN or inf."""
    if bool(torch.isfinite(t).all()):
        return
    n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    raise NonFiniteError(f"{what} holds non-finite values ({n_nan} NaN, {n_inf} inf of "
                         f"{t.numel()}){'; ' + hint if hint else ''}")

"""SAEBench's extra windows: held-out strong windows and importance-weighted ones.

SAEBench's autointerp (sae_bench/evals/autointerp/main.py, `gather_data`) explains a latent from
its top windows plus windows sampled with probability proportional to the squared activation,
excluding the top ones, and scores it on a shuffled mix of held-out top, held-out
importance-weighted and random windows. This module adds the two positive kinds to what
interp/mine/select.py selects, for latents [lo, hi), from the same window maxima:

  top (split test)  the n_top_test strongest windows of test documents that no quantile row
                    took (SAEBench holds out 2 of its 12 top windows, drawn at random);
  iw                among the windows left, drawn without replacement with probability
                    proportional to (window maximum)^2, by Efraimidis-Spirakis keys
                    log(u) / w with u = uniform_hash(seed + 2, latent, window): exact weighted
                    sampling, the same on every device and latent split; n_iw_test from test
                    documents (split test), n_iw - n_iw_test from train documents (split train).

Differences from SAEBench (README 'Presets'): weights are window maxima, not single tokens (our
windows tile sequences instead of centring on a token), and windows taken by other kinds are
excluded so no window is both shown to the explainer and held out.
"""
from __future__ import annotations

import torch

from interp.mine.select import IW, TOP, Rows, _desc_value_key, group_rank, lexsort, uniform_hash


def wants_extra(cfg) -> bool:
    """Whether mine.n_top_test / mine.n_iw ask for anything (the default: no)."""
    return bool(cfg.n_top_test or cfg.n_iw)


def select_extra(win: torch.Tensor, lat: torch.Tensor, val: torch.Tensor, taken: Rows,
                 cfg, wsplit: torch.Tensor) -> Rows:
    """Held-out top rows and importance-weighted rows of the latents in `win, lat, val`.

    win, lat, val: window maxima (interp.mine.select.window_maxima); taken: the rows
    select_positives kept for the same latents (excluded here); wsplit: [n_windows] split of
    every window (interp.mine.doc_split.window_splits): held-out rows come from test documents only,
    the explainer's iw rows from train documents only, windows spanning both are never used.
    """
    order = torch.argsort((lat << 31) | _desc_value_key(val), stable=True)
    win, lat, val = win[order], lat[order], val[order]
    split = wsplit[win].long()
    n_win = int(win.max()) + 1 if len(win) else 1
    free = (split >= 0) & ~torch.isin(lat * n_win + win, taken.latent * n_win + taken.window)
    e = (free & (split == 1)).nonzero().squeeze(1)  # still latent-major, strongest first
    s = group_rank(lat[e])
    held, held_rank = e[s < cfg.n_top_test], s[s < cfg.n_top_test]
    free[held] = False
    iw, iw_split, iw_rank = [], [], []
    for sp, quota in ((1, cfg.n_iw_test), (0, cfg.n_iw - cfg.n_iw_test)):
        rest = (free & (split == sp)).nonzero().squeeze(1)
        u = (uniform_hash(cfg.seed + 2, lat[rest], win[rest]).double() + 0.5) / 2.0**32
        key = torch.log(u) / val[rest].double().clamp_min(1e-30) ** 2  # <= 0; largest are drawn
        rest = rest[lexsort(lat[rest], -key)]
        j = group_rank(lat[rest])
        iw.append(rest[j < quota])
        iw_rank.append(j[j < quota])
        iw_split.append(torch.full_like(iw_rank[-1], sp))
    iw, iw_split, iw_rank = torch.cat(iw), torch.cat(iw_split), torch.cat(iw_rank)
    z_held, z_iw = torch.zeros_like(held), torch.zeros_like(iw)
    return Rows.make(torch.cat([lat[held], lat[iw]]), torch.cat([win[held], win[iw]]),
                     torch.cat([val[held], val[iw]]),
                     torch.cat([z_held + TOP, z_iw + IW]), torch.cat([z_held - 1, z_iw - 1]),
                     torch.cat([z_held + 1, iw_split]), torch.cat([held_rank, iw_rank]))

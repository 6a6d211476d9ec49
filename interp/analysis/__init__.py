"""Analyses of a trained SAE that need no LLM: decoder matching against other SAEs (match.py),
the logit lens of each latent (logits.py), and the SAE's error, its dark matter (dark_matter.py)."""

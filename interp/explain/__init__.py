"""Explaining: the explain stage (stage.py), what the explainer is shown (format.py) and how its
answer is read (parse.py)."""

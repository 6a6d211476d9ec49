"""Scoring: the score stage (stage.py) runs every configured scorer (one module each, listed in
registry.py) on each explanation, with controls and run-level statistics."""

"""The scorer registry: one line per scorer, in the order the catalogue shows them.

Adding a scorer is its module (a `Scorer` subclass with its `Config`, prompts, headline metric,
chance level, calls per latent and `run`) and its line below; the score config, the stage key,
the presets' cost table, the catalogue's `scorers` table and views, the UI and the exports read
this dict.
"""
from __future__ import annotations

from interp.scoring.base import Scorer
from interp.scoring.detection import Detection
from interp.scoring.embedding import Embedding
from interp.scoring.fuzzing import Fuzzing
from interp.scoring.intervention import Intervention
from interp.scoring.intervention_judge import InterventionJudge
from interp.scoring.intruder import Intruder
from interp.scoring.saebench import SAEBench
from interp.scoring.simulation import Simulation
from interp.scoring.simulation_words import SimulationWords
from interp.scoring.surprisal import Surprisal


def _registry(*scorers: Scorer) -> dict[str, Scorer]:
    out: dict[str, Scorer] = {}
    for s in scorers:
        if s.name in out:
            raise ValueError(f"scorer {s.name!r} is registered twice")
        out[s.name] = s
    return out


SCORERS: dict[str, Scorer] = _registry(
    Detection(),
    Fuzzing(),
    Embedding(),
    Surprisal(),
    Simulation(),
    SimulationWords(),
    Intervention(),
    InterventionJudge(),
    Intruder(),
    SAEBench(),
)

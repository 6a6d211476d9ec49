"""The scorer registry: scorer name (as in `score.scorers`) -> scorer object. Explicit, one place."""
from __future__ import annotations

from interp.scoring.base import Scorer
from interp.scoring.embedding import EmbeddingScorer
from interp.scoring.intervention import InterventionScorer
from interp.scoring.intervention_judge import JudgeInterventionScorer
from interp.scoring.intruder import IntruderScorer
from interp.scoring.judge import JudgeScorer
from interp.scoring.saebench import SAEBenchScorer
from interp.scoring.simulation import SimulationScorer
from interp.scoring.simulation_words import WordListSimulationScorer
from interp.scoring.surprisal import SurprisalScorer

SCORERS: dict[str, Scorer] = {
    "detection": JudgeScorer("detection"),
    "fuzzing": JudgeScorer("fuzzing"),
    "embedding": EmbeddingScorer(),
    "surprisal": SurprisalScorer(),
    "simulation": SimulationScorer(),
    "simulation_words": WordListSimulationScorer(),
    "intervention": InterventionScorer(),
    "intervention_judge": JudgeInterventionScorer(),
    "intruder": IntruderScorer(),
    "saebench": SAEBenchScorer(),
}

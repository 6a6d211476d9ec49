-- Migration 8: what each scorer's number means (its chance level, from the scorer registry and
-- the run's settings, on every score row) and one row per score run, so readers show a run's own
-- scores or the newest run's, never the best of several runs.
ALTER TABLE scores ADD COLUMN IF NOT EXISTS chance DOUBLE;   -- the headline's value for a blind judge
ALTER TABLE scorers ADD COLUMN IF NOT EXISTS uses_llm BOOLEAN;

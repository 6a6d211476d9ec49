-- Migration 5: scores carry their statistics and control rows; a `controls` table per score run.
-- A control row (control = 'shuffled' | 'top_tokens') is the same judge scoring a stand-in
-- explanation; real scores have control NULL, and every view below reads only those.
ALTER TABLE scores ADD COLUMN IF NOT EXISTS control VARCHAR;
ALTER TABLE scores ADD COLUMN IF NOT EXISTS control_text VARCHAR;
ALTER TABLE scores ADD COLUMN IF NOT EXISTS n_valid INTEGER;
ALTER TABLE scores ADD COLUMN IF NOT EXISTS metric VARCHAR;   -- the scorer's headline metric
ALTER TABLE scores ADD COLUMN IF NOT EXISTS value DOUBLE;     -- ... and its value
ALTER TABLE scores ADD COLUMN IF NOT EXISTS ci_low DOUBLE;    -- bootstrap 95% interval of value
ALTER TABLE scores ADD COLUMN IF NOT EXISTS ci_high DOUBLE;
CREATE TABLE IF NOT EXISTS controls (
    score_key VARCHAR, sae_key VARCHAR, scorer VARCHAR, control VARCHAR, metric VARCHAR,
    n_latents INTEGER, real_mean DOUBLE, control_mean DOUBLE, lift DOUBLE, ci_low DOUBLE,
    ci_high DOUBLE, informative BOOLEAN, verdict VARCHAR);

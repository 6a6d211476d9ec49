-- Migration 9: test the judge before believing it. Per score run and scorer, the known-answer
-- probes (one row per probe, and 'all' pooled, `passed` = its interval lies above chance), and
-- the run's three-way verdict per scorer (case: judge_fails_probes | no_information |
-- informative | informative_unprobed | untested).
CREATE TABLE IF NOT EXISTS judge_checks (
    score_key VARCHAR, sae_key VARCHAR, scorer VARCHAR, probe VARCHAR, metric VARCHAR,
    value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, chance DOUBLE, n_valid INTEGER,
    n_examples INTEGER, status VARCHAR, passed BOOLEAN);
CREATE TABLE IF NOT EXISTS verdicts (
    score_key VARCHAR, sae_key VARCHAR, scorer VARCHAR, metric VARCHAR, chance DOUBLE,
    probes_value DOUBLE, probes_ci_low DOUBLE, probes_ci_high DOUBLE, probes_passed BOOLEAN,
    lift DOUBLE, lift_ci_low DOUBLE, lift_ci_high DOUBLE, informative BOOLEAN, "case" VARCHAR,
    verdict VARCHAR);
-- The controls' verdict is a one-sided sign-flip test over latents: its p-value and level.
ALTER TABLE controls ADD COLUMN IF NOT EXISTS p_value DOUBLE;
ALTER TABLE controls ADD COLUMN IF NOT EXISTS alpha DOUBLE;

-- Migration 4: each scorer's headline metric (a `scores` column name), written by every publish
-- from the scorer registry, so views, the browser and the report agree on one number per scorer.
CREATE TABLE IF NOT EXISTS scorers (
    scorer VARCHAR PRIMARY KEY, headline_metric VARCHAR NOT NULL, description VARCHAR);

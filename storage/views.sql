-- Views for SQL users. Documented in README.md ("The catalogue"). The views with one column per
-- scorer (explanation_scores, latent_match_compare) are generated from the scorer registry by
-- storage/views.py; `latest` (views_latest.sql) reads explanation_scores.

-- Mined example windows with their tokens and decoded text.
CREATE OR REPLACE VIEW examples AS
SELECT e.*,
       list_slice(s.token_str, e.start + 1, e.start + len(e.acts)) AS tokens,
       array_to_string(list_slice(s.token_str, e.start + 1, e.start + len(e.acts)), '') AS text
FROM example_rows e JOIN sequences s ON s.collect_key = e.collect_key AND s.seq_id = e.seq_id;

-- Every score with its scorer's headline metric (from `scorers`, written from the scorer
-- registry) and that metric's value: the one number per explanation, scorer and score run that
-- the browser, the report and the views below rank and filter by (`value`, written by the score
-- stage with its 95% interval ci_low/ci_high and the metric's chance level, for scores
-- published since migration 5 and 8).
CREATE OR REPLACE VIEW score_headlines AS
SELECT s.*, coalesce(s.metric, sc.headline_metric) AS headline_metric,
       coalesce(s.value, CASE sc.headline_metric
           WHEN 'balanced_accuracy' THEN s.balanced_accuracy WHEN 'auc' THEN s.auc
           WHEN 'corr' THEN s.corr WHEN 'f1' THEN s.f1 WHEN 'accuracy' THEN s.accuracy
           WHEN 'precision' THEN s.precision WHEN 'recall' THEN s.recall END) AS headline
FROM scores s LEFT JOIN scorers sc USING (scorer)
WHERE s.control IS NULL;  -- control rows score stand-in explanations: see `controls`

-- One row per score run (a score artifact): what it scored and when it finished.
CREATE OR REPLACE VIEW score_runs AS
SELECT score_key, any_value(explain_key) AS explain_key, any_value(sae_key) AS sae_key,
       max(created_at) AS scored_at, count(DISTINCT latent) AS n_latents,
       list(DISTINCT scorer ORDER BY scorer) AS scorers
FROM scores GROUP BY score_key;

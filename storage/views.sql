-- Views for SQL users. Documented in README.md ("The catalogue").

-- Mined example windows with their tokens and decoded text.
CREATE OR REPLACE VIEW examples AS
SELECT e.*,
       list_slice(s.token_str, e.start + 1, e.start + len(e.acts)) AS tokens,
       array_to_string(list_slice(s.token_str, e.start + 1, e.start + len(e.acts)), '') AS text
FROM example_rows e JOIN sequences s ON s.collect_key = e.collect_key AND s.seq_id = e.seq_id;

-- Every score with its scorer's headline metric (from `scorers`, written from the scorer
-- registry) and that metric's value: the one number per explanation and scorer that the
-- browser, the report and the views below rank and filter by (`value`, written by the score
-- stage with its bootstrap interval ci_low/ci_high, for scores published since migration 5).
CREATE OR REPLACE VIEW score_headlines AS
SELECT s.*, coalesce(s.metric, sc.headline_metric) AS headline_metric,
       coalesce(s.value, CASE sc.headline_metric
           WHEN 'balanced_accuracy' THEN s.balanced_accuracy WHEN 'auc' THEN s.auc
           WHEN 'corr' THEN s.corr WHEN 'f1' THEN s.f1 WHEN 'accuracy' THEN s.accuracy
           WHEN 'precision' THEN s.precision WHEN 'recall' THEN s.recall END) AS headline
FROM scores s LEFT JOIN scorers sc USING (scorer)
WHERE s.control IS NULL;  -- control rows score stand-in explanations: see `controls`

-- One row per explanation with each scorer's headline score side by side (plus the AUC of the
-- two LLM judges, whose headline is balanced accuracy).
CREATE OR REPLACE VIEW explanation_scores AS
SELECT x.explanation_id, x.sae_key, x.latent, x.text, x.status, x.explainer_model, x.prompt_hash,
       x.created_at,
       max(s.headline) FILTER (WHERE s.scorer = 'detection') AS detection,
       max(s.auc) FILTER (WHERE s.scorer = 'detection') AS detection_auc,
       max(s.headline) FILTER (WHERE s.scorer = 'fuzzing') AS fuzzing,
       max(s.auc) FILTER (WHERE s.scorer = 'fuzzing') AS fuzzing_auc,
       max(s.headline) FILTER (WHERE s.scorer = 'embedding') AS embedding,
       max(s.headline) FILTER (WHERE s.scorer = 'surprisal') AS surprisal,
       max(s.headline) FILTER (WHERE s.scorer = 'simulation') AS simulation,
       max(s.headline) FILTER (WHERE s.scorer = 'intervention') AS intervention,
       max(s.headline) FILTER (WHERE s.scorer = 'intruder') AS intruder,
       max(s.headline) FILTER (WHERE s.scorer = 'simulation_words') AS simulation_words,
       max(s.headline) FILTER (WHERE s.scorer = 'intervention_judge') AS intervention_judge
FROM explanations x LEFT JOIN score_headlines s USING (explanation_id)
GROUP BY ALL;

-- The newest ok explanation of every latent of every SAE, with its scores and latent stats.
CREATE OR REPLACE VIEW latest AS
SELECT es.*, l.frequency, l.max_act
FROM explanation_scores es
JOIN latents l ON l.sae_key = es.sae_key AND l.latent = es.latent
WHERE es.status = 'ok'
QUALIFY row_number() OVER (PARTITION BY es.sae_key, es.latent ORDER BY es.created_at DESC) = 1;

-- Matched latents of two SAEs of one hookpoint (by decoder cosine) with each side's newest ok
-- explanation and scores; NULL explanation columns where that side was not explained.
CREATE OR REPLACE VIEW latent_match_compare AS
SELECT m.sae_a, m.latent_a, m.sae_b, m.latent_b, m.cosine,
       a.text AS text_a, a.explainer_model AS explainer_a, a.detection AS detection_a,
       a.detection_auc AS detection_auc_a, a.fuzzing AS fuzzing_a,
       b.text AS text_b, b.explainer_model AS explainer_b, b.detection AS detection_b,
       b.detection_auc AS detection_auc_b, b.fuzzing AS fuzzing_b
FROM latent_matches m
LEFT JOIN latest a ON a.sae_key = m.sae_a AND a.latent = m.latent_a
LEFT JOIN latest b ON b.sae_key = m.sae_b AND b.latent = m.latent_b;

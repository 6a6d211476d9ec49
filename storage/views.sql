-- Views for SQL users. Documented in README.md ("The catalogue").

-- Mined example windows with their tokens and decoded text.
CREATE OR REPLACE VIEW examples AS
SELECT e.*,
       list_slice(s.token_str, e.start + 1, e.start + len(e.acts)) AS tokens,
       array_to_string(list_slice(s.token_str, e.start + 1, e.start + len(e.acts)), '') AS text
FROM example_rows e JOIN sequences s ON s.collect_key = e.collect_key AND s.seq_id = e.seq_id;

-- One row per explanation with each scorer's balanced accuracy side by side.
CREATE OR REPLACE VIEW explanation_scores AS
SELECT x.explanation_id, x.sae_key, x.latent, x.text, x.status, x.explainer_model, x.prompt_hash,
       x.created_at,
       max(s.balanced_accuracy) FILTER (WHERE s.scorer = 'detection') AS detection,
       max(s.auc) FILTER (WHERE s.scorer = 'detection') AS detection_auc,
       max(s.balanced_accuracy) FILTER (WHERE s.scorer = 'fuzzing') AS fuzzing,
       max(s.auc) FILTER (WHERE s.scorer = 'fuzzing') AS fuzzing_auc,
       max(s.auc) FILTER (WHERE s.scorer = 'embedding') AS embedding,
       max(s.corr) FILTER (WHERE s.scorer = 'simulation') AS simulation
FROM explanations x LEFT JOIN scores s USING (explanation_id)
GROUP BY ALL;

-- The newest ok explanation of every latent of every SAE, with its scores and latent stats.
CREATE OR REPLACE VIEW latest AS
SELECT es.*, l.frequency, l.max_act
FROM explanation_scores es
JOIN latents l ON l.sae_key = es.sae_key AND l.latent = es.latent
WHERE es.status = 'ok'
QUALIFY row_number() OVER (PARTITION BY es.sae_key, es.latent ORDER BY es.created_at DESC) = 1;

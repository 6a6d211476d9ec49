-- Read-side queries of `interp report` (interp/report.py), by name; loaded with
-- storage.read.queries. Values are bound, never formatted in.

-- name: runs_matching
-- A run by exact id or prefix; every run (newest first) when $id is NULL.
SELECT * FROM runs WHERE ($id IS NULL OR run_id = $id OR starts_with(run_id, $id))
ORDER BY started_at DESC;

-- name: run_ids
SELECT run_id FROM runs ORDER BY started_at DESC;

-- name: run_scores
-- The run's own headline scores (its score run's rows only, $score) with each metric's chance
-- level and each latent's firing frequency.
SELECT s.scorer, s.latent, s.explanation_id, s.headline AS value, s.n_failed, s.n_examples,
       s.status, s.headline_metric AS metric, s.chance, s.n_valid, s.balanced_accuracy,
       s.precision, s.recall, s.f1, s.control, l.frequency
FROM score_headlines s
LEFT JOIN (SELECT sae_key, latent, any_value(frequency) AS frequency FROM latents
           WHERE sae_key = $sae GROUP BY ALL) l ON l.sae_key = s.sae_key AND l.latent = s.latent
WHERE s.score_key = $score;

-- name: run_calls
SELECT artifact_stage, stage, model, status, error, prompt_tokens, completion_tokens, latency_s
FROM llm_calls WHERE artifact_key IN (SELECT unnest($keys));

-- name: explanation_text
SELECT text FROM explanations WHERE explanation_id = ?;

-- name: top_example
SELECT tokens, acts FROM examples WHERE mine_key = ? AND latent = ? AND kind = 'top'
ORDER BY rank LIMIT 1;

-- name: sae
SELECT * FROM saes WHERE sae_key = ?;

-- name: explanation_status
SELECT status, count(*) FROM explanations WHERE explain_key = ? GROUP BY ALL ORDER BY 2 DESC;

-- name: run_controls
-- The lift of the run's explanations over each control, per scorer (see `controls`).
SELECT scorer, control, metric, n_latents, real_mean, control_mean, lift, ci_low, ci_high,
       informative, verdict
FROM controls WHERE score_key = ? ORDER BY scorer, control;

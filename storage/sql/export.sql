-- Queries of `interp export` (storage/export.py), by name. Values are bound, never formatted in.

-- name: sae
SELECT sae_key, model, hookpoint, architecture, d_in, num_latents, k, fvu, l0, dead_frac,
       ce_loss_recovered, metrics FROM saes WHERE sae_key = ?;

-- name: latents
SELECT latent, frequency, max_act FROM latents WHERE sae_key = ?
QUALIFY row_number() OVER (PARTITION BY latent ORDER BY mine_key) = 1
ORDER BY latent;

-- name: logits
SELECT latent, direction, list(token ORDER BY rank) AS tokens, list(value ORDER BY rank) AS vals
FROM latent_logits WHERE sae_key = ? GROUP BY latent, direction;

-- name: activations
-- Activating windows (top and quantile, max_act > 0) of every latent, best first.
SELECT latent, kind, rank, quantile, seq_id, start, max_act, acts, tokens FROM examples
WHERE sae_key = ? AND kind IN ('top', 'quantile') AND max_act > 0
ORDER BY latent, kind DESC, quantile DESC NULLS FIRST, rank;

-- name: explanations
-- The newest ok explanation of each latent, its saebench and detection accuracies (SAEBench's
-- autointerp score is an accuracy) and every scorer's headline metric as a map.
WITH newest AS (
    SELECT latent, explanation_id, text, explainer_model, prompt_name, created_at
    FROM explanations WHERE sae_key = ? AND status = 'ok'
    QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC) = 1)
SELECT x.latent, x.explanation_id, x.text, x.explainer_model, x.prompt_name, x.created_at,
       max(s.accuracy) FILTER (WHERE s.scorer = 'detection') AS detection_accuracy,
       max(s.accuracy) FILTER (WHERE s.scorer = 'saebench') AS saebench_accuracy,
       count(*) FILTER (WHERE s.scorer = 'saebench') AS n_saebench,
       map_from_entries(list((s.scorer, s.headline)) FILTER (WHERE s.scorer IS NOT NULL)) AS scores
FROM newest x LEFT JOIN score_headlines s USING (explanation_id)
GROUP BY ALL ORDER BY x.latent;

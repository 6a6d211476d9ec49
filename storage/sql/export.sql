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

-- name: newest_score_run
-- The SAE's newest score run (the run whose rows were written last, as on the browser's
-- overview): what an export shows unless told which run.
SELECT score_key FROM scores WHERE sae_key = ? AND control IS NULL
GROUP BY score_key ORDER BY max(created_at) DESC, score_key DESC LIMIT 1;

-- name: score_runs_like
-- The SAE's score runs whose key starts with $run, an exact match first (--score-run).
SELECT score_key FROM scores WHERE sae_key = $sae AND starts_with(score_key, $run)
GROUP BY score_key ORDER BY score_key = $run DESC, score_key LIMIT 2;

-- name: score_run_keys
SELECT DISTINCT score_key FROM scores WHERE sae_key = ? ORDER BY score_key;

-- name: explanations
-- The explanations that score run $run scored (one per latent), each with that run's own
-- saebench and detection accuracies (SAEBench's autointerp score is an accuracy) and every
-- scorer's headline metric as a map; never another run's. $run NULL (an SAE never scored): the
-- newest ok explanation of each latent, without scores.
WITH picked AS (
    SELECT latent, explanation_id, text, explainer_model, prompt_name, created_at
    FROM explanations WHERE sae_key = $sae AND status = 'ok'
      AND ($run IS NULL OR explain_key = (SELECT any_value(explain_key) FROM scores
                                          WHERE score_key = $run))
    QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC, explanation_id DESC) = 1),
run AS (SELECT * FROM score_headlines WHERE score_key = $run)
SELECT x.latent, x.explanation_id, x.text, x.explainer_model, x.prompt_name, x.created_at,
       any_value(s.accuracy) FILTER (WHERE s.scorer = 'detection') AS detection_accuracy,
       any_value(s.accuracy) FILTER (WHERE s.scorer = 'saebench') AS saebench_accuracy,
       count(s.scorer) FILTER (WHERE s.scorer = 'saebench') AS n_saebench,
       map_from_entries(list((s.scorer, s.headline)) FILTER (WHERE s.scorer IS NOT NULL)) AS scores
FROM picked x LEFT JOIN run s USING (explanation_id)
GROUP BY ALL ORDER BY x.latent;

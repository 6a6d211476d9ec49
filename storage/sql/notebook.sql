-- Queries of the notebook API (interp.open -> interp.notebook.Catalogue), by name. Values are
-- bound ($name), never formatted in; a NULL filter means "any".

-- name: saes
SELECT sae_key, model, hookpoint, architecture, d_in, num_latents, k, fvu, l0, dead_frac,
       ce_loss_recovered, kl_div, created_at
FROM saes ORDER BY created_at DESC;

-- name: latents
-- One row per latent (first mining artifact), with its newest ok explanation if any.
WITH lat AS (
    SELECT sae_key, latent, frequency, max_act, mean_act, dead FROM latents
    WHERE ($sae IS NULL OR sae_key = $sae)
    QUALIFY row_number() OVER (PARTITION BY sae_key, latent ORDER BY mine_key) = 1),
best AS (
    SELECT sae_key, latent, explanation_id, text FROM explanations
    WHERE status = 'ok' AND ($sae IS NULL OR sae_key = $sae)
    QUALIFY row_number() OVER (PARTITION BY sae_key, latent ORDER BY created_at DESC) = 1)
SELECT lat.*, best.explanation_id, best.text
FROM lat LEFT JOIN best USING (sae_key, latent)
WHERE NOT $explained OR best.explanation_id IS NOT NULL
ORDER BY lat.sae_key, lat.latent;

-- name: explanations
-- Every explanation with one score run's headline scores (a scorer -> value map) and that run's
-- key: the explanation's newest score run (whose rows were written last, as in `latest`), or
-- score run $run, which keeps only the explanations $run scored. Never pooled over runs.
WITH s AS (
    SELECT explanation_id, score_key, scorer, headline FROM score_headlines
    WHERE ($sae IS NULL OR sae_key = $sae) AND ($lat IS NULL OR latent = $lat)
      AND ($run IS NULL OR score_key = $run)
    QUALIFY score_key = arg_max(score_key, created_at) OVER (PARTITION BY explanation_id)),
m AS (SELECT explanation_id, any_value(score_key) AS score_key,
             map(list(scorer ORDER BY scorer), list(headline ORDER BY scorer)) AS scores
      FROM s GROUP BY explanation_id)
SELECT x.explanation_id, x.sae_key, x.latent, x.status, x.text, x.explainer_model,
       x.prompt_name, x.prompt_hash, x.created_at, m.score_key, m.scores
FROM explanations x LEFT JOIN m USING (explanation_id)
WHERE ($sae IS NULL OR x.sae_key = $sae) AND ($lat IS NULL OR x.latent = $lat)
  AND ($run IS NULL OR m.score_key IS NOT NULL)
ORDER BY x.sae_key, x.latent, x.created_at DESC;

-- name: score_runs
-- Score runs, newest first: what each scored, when, and per scorer the mean of its own headline
-- scores with the metric's chance level (one row per run and scorer; never pooled over either).
SELECT r.score_key, r.sae_key, r.explain_key, r.scored_at, h.scorer, h.headline_metric AS metric,
       avg(h.headline) AS mean, count(h.headline) AS n_scored, any_value(h.chance) AS chance
FROM score_runs r JOIN score_headlines h USING (score_key)
WHERE ($sae IS NULL OR r.sae_key = $sae)
GROUP BY ALL ORDER BY r.scored_at DESC, r.score_key, h.scorer;

-- name: score_run_keys
-- Score keys starting with $run (a key or prefix), an exact match first.
SELECT DISTINCT score_key FROM scores WHERE starts_with(score_key, $run)
ORDER BY score_key = $run DESC, score_key LIMIT 2;

-- name: examples
SELECT kind, rank, quantile, max_act, tokens, acts FROM examples
WHERE sae_key = $sae AND latent = $lat AND kind = $kind
ORDER BY quantile DESC NULLS FIRST, rank LIMIT $n;

-- name: logits
SELECT direction, rank, token, value FROM latent_logits
WHERE sae_key = $sae AND latent = $lat ORDER BY direction, rank;

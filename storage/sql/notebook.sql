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
-- Every explanation with each scorer's headline metric (a scorer -> value map).
SELECT x.explanation_id, x.sae_key, x.latent, x.status, x.text, x.explainer_model,
       x.prompt_name, x.prompt_hash, x.created_at,
       (SELECT map(list(s.scorer ORDER BY s.scorer), list(s.headline ORDER BY s.scorer))
        FROM score_headlines s WHERE s.explanation_id = x.explanation_id) AS scores
FROM explanations x
WHERE ($sae IS NULL OR x.sae_key = $sae) AND ($lat IS NULL OR x.latent = $lat)
ORDER BY x.sae_key, x.latent, x.created_at DESC;

-- name: examples
SELECT kind, rank, quantile, max_act, tokens, acts FROM examples
WHERE sae_key = $sae AND latent = $lat AND kind = $kind
ORDER BY quantile DESC NULLS FIRST, rank LIMIT $n;

-- name: logits
SELECT direction, rank, token, value FROM latent_logits
WHERE sae_key = $sae AND latent = $lat ORDER BY direction, rank;

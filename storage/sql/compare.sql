-- Comparisons across runs, by name (storage.read.queries("compare")): `interp report`, the
-- README's "SAE latents vs MLP neurons" and "One score run at a time", the notebook's
-- compare_score_runs. Values are bound, never formatted in. A comparison lines runs up side by
-- side, each with its own numbers: nothing here pools two runs or two scorers into one number.

-- name: score_runs_side_by_side
-- Two score runs ($a, $b: score keys, listed by the `score_runs` view) side by side: one row per
-- latent and scorer that either run scored, each run's explanation and headline score, b - a,
-- the metric and each run's chance level. After `interp rescore --set score.seed=7` both runs
-- scored the same explanations (explanation_a = explanation_b); NULL on a side that did not
-- score the latent.
WITH a AS (SELECT * FROM score_headlines WHERE score_key = $a),
     b AS (SELECT * FROM score_headlines WHERE score_key = $b)
SELECT coalesce(a.sae_key, b.sae_key) AS sae_key, coalesce(a.latent, b.latent) AS latent,
       coalesce(a.scorer, b.scorer) AS scorer,
       coalesce(a.headline_metric, b.headline_metric) AS metric,
       a.headline AS value_a, b.headline AS value_b, b.headline - a.headline AS delta,
       a.chance AS chance_a, b.chance AS chance_b, a.status AS status_a, b.status AS status_b,
       a.explanation_id AS explanation_a, b.explanation_id AS explanation_b
FROM a FULL OUTER JOIN b ON a.sae_key = b.sae_key AND a.latent = b.latent AND a.scorer = b.scorer
ORDER BY sae_key, latent, scorer;

-- name: architecture_scores
-- Per run (so per dictionary: SAE latents or MLP neurons) and scorer: the mean headline score of
-- the run's scored explanations, with a 95% normal-approximation interval of that mean over
-- latents (mean +- 1.96 sd / sqrt(n)); $runs lists the runs, e.g. a neurons run and an SAE run
-- on the same model, layer and corpus. One row per (architecture, scorer) for two such runs.
SELECT a.architecture, h.scorer, h.headline_metric AS metric, count(*) AS n_latents,
       avg(h.headline) AS mean,
       avg(h.headline) - 1.96 * stddev_samp(h.headline) / sqrt(count(*)) AS ci_low,
       avg(h.headline) + 1.96 * stddev_samp(h.headline) / sqrt(count(*)) AS ci_high,
       a.hookpoint, a.num_latents, a.k, r.run_id, any_value(h.chance) AS chance
FROM runs r
JOIN saes a ON a.sae_key = r.sae_key
JOIN score_headlines h ON h.score_key = r.score_key
WHERE list_contains($runs, r.run_id) AND h.headline IS NOT NULL
GROUP BY r.run_id, a.architecture, a.hookpoint, a.num_latents, a.k, h.scorer, h.headline_metric
ORDER BY h.scorer, a.architecture, r.run_id;

-- name: comparable_runs
-- The newest scored run of each other architecture on the same model and layer as run $id, over
-- the same token sequences (same corpus): the runs its report compares it with.
WITH corpus AS (SELECT collect_key, hash(list(tokens ORDER BY seq_id)) AS h
                FROM sequences GROUP BY collect_key),
me AS (SELECT a.model, a.architecture, split_part(a.hookpoint, '.', 2) AS layer, c.h
       FROM runs r JOIN saes a ON a.sae_key = r.sae_key
       JOIN corpus c ON c.collect_key = a.collect_key WHERE r.run_id = $id)
SELECT r.run_id
FROM runs r JOIN saes a ON a.sae_key = r.sae_key JOIN corpus c ON c.collect_key = a.collect_key
JOIN me ON a.model = me.model AND split_part(a.hookpoint, '.', 2) = me.layer AND c.h = me.h
WHERE a.architecture <> me.architecture AND r.score_key IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY a.architecture ORDER BY r.started_at DESC) = 1
ORDER BY r.run_id;

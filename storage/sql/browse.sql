-- Read-side queries of the latent browser (interp/ui), by name; loaded with storage.read.queries.
-- Values are bound ($name or ?), never formatted in. The latent table's query is assembled from
-- whitelisted fragments in interp/ui/data.py and is not here.
--
-- Scores are one score run's, never pooled: an explanation's scores come from its newest score
-- run (the run whose rows for it were written last, as in the `latest` view) or from the score
-- run the user picked ($run), and a summary is per scorer, beside that metric's chance level.

-- name: runs
SELECT run_id, started_at, finished_at, collect_key, sae_key, mine_key, explain_key, score_key,
       seconds, cached
FROM runs ORDER BY started_at DESC;

-- name: judge_verdicts
-- Whether each score run's judge tells explanations from another latent's (the shuffled
-- control, one sentence per scorer; see `controls`).
SELECT score_key, scorer, informative, verdict FROM controls
WHERE control = 'shuffled' ORDER BY score_key, scorer;

-- name: saes
-- SAEs with training metrics and labelling progress (their scores: score_run_summaries).
SELECT a.sae_key, a.hookpoint, a.model, a.architecture, a.d_in, a.num_latents, a.k,
       a.tokens_seen, a.fvu, a.l0, a.dead_frac, a.ce_loss_recovered, a.kl_div, a.created_at,
       (SELECT count(DISTINCT latent) FROM explanations x
        WHERE x.sae_key = a.sae_key AND x.status = 'ok') AS n_explained,
       (SELECT count(*) FROM explanations x WHERE x.sae_key = a.sae_key) AS n_explanations
FROM saes a ORDER BY a.created_at DESC;

-- name: score_run_summaries
-- Per score run and scorer, newest run first: the mean of the run's own headline scores over
-- the explanations it scored, how many it scored, the metric and its chance level (the value
-- of a judge that knows nothing). Never averaged across scorers: balanced accuracy, correlation
-- and nats have different scales and chance levels. One pass over the scores (the index page).
SELECT score_key, sae_key, explain_key,
       max(last_at) OVER (PARTITION BY score_key) AS scored_at, scorer, metric, mean, n_scored,
       n_latents, chance
FROM (SELECT score_key, any_value(sae_key) AS sae_key, any_value(explain_key) AS explain_key,
             max(created_at) AS last_at, scorer, any_value(headline_metric) AS metric,
             avg(headline) AS mean, count(headline) AS n_scored, count(*) AS n_latents,
             any_value(chance) AS chance
      FROM score_headlines GROUP BY score_key, scorer)
ORDER BY scored_at DESC, score_key, scorer;

-- name: score_run
-- A score run by exact key or unique prefix (the browser's `run` parameter): its SAE and the
-- explain run whose explanations it scored.
SELECT score_key, any_value(sae_key) AS sae_key, any_value(explain_key) AS explain_key
FROM scores WHERE score_key = $run OR starts_with(score_key, $run)
GROUP BY score_key ORDER BY score_key = $run DESC, score_key LIMIT 2;

-- name: sae_keys
SELECT sae_key FROM saes ORDER BY created_at DESC;

-- name: scorers_present
SELECT DISTINCT scorer FROM scores ORDER BY scorer;

-- name: headlines_of
-- Each scorer's headline score for a list of explanations ($ids) with the score run it is from:
-- each explanation's newest score run, or score run $run.
SELECT s.explanation_id, s.scorer, s.headline, s.score_key FROM score_headlines s
WHERE s.explanation_id IN (SELECT unnest($ids)) AND ($run IS NULL OR s.score_key = $run)
QUALIFY s.score_key = arg_max(s.score_key, s.created_at) OVER (PARTITION BY s.explanation_id);

-- name: n_embeddings
SELECT count(*) FROM explanation_embeddings;

-- name: latent_sae
SELECT sae_key, hookpoint, model, architecture, num_latents, k, fvu, l0, dead_frac,
       ce_loss_recovered
FROM saes WHERE sae_key = ?;

-- name: latent_stats
SELECT mine_key, frequency, n_active_tokens, n_active_windows, max_act, mean_act, dead, hist
FROM latents WHERE sae_key = ? AND latent = ? ORDER BY mine_key LIMIT 1;

-- name: latent_explanations
SELECT explanation_id, explain_key, mine_key, text, status, error, raw, explainer_model,
       prompt_name, prompt_hash, settings_hash, n_examples, prompt_tokens,
       completion_tokens, latency_s, attempts, created_at
FROM explanations WHERE sae_key = ? AND latent = ? ORDER BY created_at DESC;

-- name: latent_scores
-- Every score of the latent's explanations with its score run, each explanation's newest run
-- first (scored_at: when that run scored the explanation, as in explanation_scores).
SELECT explanation_id, score_key,
       max(created_at) OVER (PARTITION BY explanation_id, score_key) AS scored_at, scorer,
       scorer_model, prompt_hash, status, n_examples, n_failed, headline_metric, headline, chance,
       ci_low, ci_high, balanced_accuracy, precision, recall, f1, auc, accuracy, corr, created_at
FROM score_headlines WHERE sae_key = ? AND latent = ?
ORDER BY explanation_id, scored_at DESC, score_key DESC, scorer;

-- name: latent_examples
-- The `examples` view's join, minus its unused text column: half the time of the view.
SELECT e.kind, e.split, e.rank, e.quantile, e.seq_id, e.start, e.max_act, e.acts,
       list_slice(s.token_str, e.start + 1, e.start + len(e.acts)) AS tokens
FROM example_rows e JOIN sequences s ON s.collect_key = e.collect_key AND s.seq_id = e.seq_id
WHERE e.sae_key = ? AND e.latent = ? AND e.mine_key = ?
ORDER BY e.kind, e.quantile DESC, e.rank;

-- name: latent_matches
-- Matched latents of other SAEs on this hookpoint, with their newest ok explanation.
WITH m AS (
    SELECT sae_b AS sae_key, latent_b AS latent, cosine FROM latent_matches
    WHERE sae_a = $sae AND latent_a = $lat
    UNION ALL
    SELECT sae_a, latent_a, cosine FROM latent_matches WHERE sae_b = $sae AND latent_b = $lat)
SELECT m.sae_key, m.latent, max(m.cosine) AS cosine, any_value(a.architecture) AS architecture,
       (SELECT x.text FROM explanations x WHERE x.sae_key = m.sae_key AND x.latent = m.latent
        AND x.status = 'ok' ORDER BY x.created_at DESC LIMIT 1) AS text
FROM m JOIN saes a ON a.sae_key = m.sae_key AND a.hookpoint = $hook
WHERE m.sae_key <> $sae
GROUP BY m.sae_key, m.latent ORDER BY cosine DESC LIMIT 20;

-- name: latent_logits
-- The output side (logits stage): top promoted and suppressed tokens of the decoder direction.
SELECT direction, rank, token, value FROM latent_logits
WHERE sae_key = ? AND latent = ? ORDER BY direction, rank;

-- name: latent_heads
-- SAEs on attention head outputs (hook_z): the latent's share of squared decoder norm per head.
SELECT head, share FROM head_shares WHERE sae_key = ? AND latent = ? ORDER BY share DESC, head;

-- The newest ok explanation of every latent of every SAE, with its newest score run's scores
-- (explanation_scores) and the latent's stats from the mining artifact the explanation was made
-- from (an SAE mined twice has two `latents` rows per latent). Ties are broken by key, so the
-- row shown never depends on the scan order.
CREATE OR REPLACE VIEW latest AS
SELECT es.*, l.frequency, l.max_act
FROM explanation_scores es
LEFT JOIN latents l ON l.sae_key = es.sae_key AND l.latent = es.latent AND l.mine_key = es.mine_key
WHERE es.status = 'ok'
QUALIFY row_number() OVER (PARTITION BY es.sae_key, es.latent
                           ORDER BY es.created_at DESC, es.explanation_id DESC,
                                    es.scored_at DESC NULLS LAST, es.score_key DESC) = 1;

-- The newest ok explanation of every latent of every SAE, with its newest score run's scores
-- (explanation_scores) and the latent's stats.
CREATE OR REPLACE VIEW latest AS
SELECT es.*, l.frequency, l.max_act
FROM explanation_scores es
JOIN latents l ON l.sae_key = es.sae_key AND l.latent = es.latent
WHERE es.status = 'ok'
QUALIFY row_number() OVER (PARTITION BY es.sae_key, es.latent
                           ORDER BY es.created_at DESC, es.scored_at DESC NULLS LAST) = 1;

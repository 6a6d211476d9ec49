-- Migration 7: the output side of each latent (logits stage): its decoder direction through the
-- final norm and unembedding, top-k promoted and suppressed tokens. Keyed like the artifact's rows
-- so a re-published artifact cannot duplicate them.
CREATE TABLE IF NOT EXISTS latent_logits (
    sae_key VARCHAR NOT NULL, latent INTEGER NOT NULL, direction VARCHAR NOT NULL,
    rank SMALLINT NOT NULL, token_id INTEGER, token VARCHAR, value FLOAT,
    PRIMARY KEY (sae_key, latent, direction, rank));

-- Migration 2: why a score failed or had failed examples (LLM errors, unparseable answers);
-- NULL if none. IF NOT EXISTS: some catalogues made before schema_version already have it.
ALTER TABLE scores ADD COLUMN IF NOT EXISTS error VARCHAR;

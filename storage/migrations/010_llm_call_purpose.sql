-- Migration 10: what each LLM call was for ('explain', a scorer's name, 'control:<scorer>',
-- 'probe:<scorer>'), so the cost per latent of each is one query:
--   select purpose, count(*) from llm_calls group by all
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS purpose VARCHAR;

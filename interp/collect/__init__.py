"""Collecting: corpus text cut into token sequences (corpus.py), the subject model's activations
at the hookpoint written as shards (stage.py, format in shards.py), the document table
(documents.py), and activations recomputed from stored tokens (stream.py)."""

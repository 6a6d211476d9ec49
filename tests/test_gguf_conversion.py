"""The embedded model's one-off GGUF conversion parses the file once: within gguf_parsed_once,
gguf's reader and tensor-name table are memoised (transformers builds them three times and once
per module), and outside it gguf is as it was. The converted weights and tokenizer were checked
identical to an unmemoised conversion (273 tensors, torch.equal); the slow end-to-end tests load
the converted model."""
from __future__ import annotations

import gguf
import numpy as np

from interp.models import gguf_parsed_once


def test_the_gguf_is_parsed_once_within_and_gguf_is_restored_after(tmp_path):
    path = str(tmp_path / "tiny.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("token_embd.weight", np.ones((4, 2), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map
    with gguf_parsed_once():
        assert gguf.GGUFReader(path) is gguf.GGUFReader(path)
        arch = next(iter(gguf.MODEL_ARCH_NAMES))
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, names)
    assert gguf.GGUFReader(path) is not gguf.GGUFReader(path)

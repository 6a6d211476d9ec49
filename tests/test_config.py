"""Config: defaults, YAML, overrides, and errors that name the field."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from interp.config import ConfigError, RunConfig, build_config, dump_config, load_config


def test_defaults_are_valid_and_round_trip(tmp_path):
    cfg = RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sae:\n  k: 16\nexplain:\n  n_latents: 5\n")
    cfg = load_config(path, {"sae.expansion_factor": 2, "corpus.n_tokens": None})
    assert (cfg.sae.k, cfg.sae.expansion_factor, cfg.explain.n_latents) == (16, 2, 5)
    assert cfg.corpus.n_tokens == RunConfig().corpus.n_tokens  # None override = keep


@pytest.mark.parametrize("data, field", [
    ({"sae": {"kk": 3}}, "sae.kk"),
    ({"sae": {"k": 0}}, "sae.k"),
    ({"corpus": {"max_doc_tokens": 0}}, "corpus.max_doc_tokens"),
    ({"mine": {"window": "wide"}}, "mine.window"),
    ({"bogus": {}}, "bogus"),
    ({"model": {"hookpoint": "resid"}}, "model.hookpoint"),
    ({"score": {"scorers": ["detection", "telepathy"]}}, "score.scorers"),
])
def test_invalid_fields_are_named(data, field):
    with pytest.raises(ConfigError) as err:
        build_config(data)
    assert field in str(err.value)


def test_cross_field_checks_name_fields():
    with pytest.raises(ConfigError, match="mine.window"):
        build_config({"corpus": {"seq_len": 40}, "mine": {"window": 32}})
    with pytest.raises(ConfigError, match="llm.base_url"):
        build_config({"llm": {"backend": "openai"}})
    with pytest.raises(ConfigError, match="explain.n_examples"):
        build_config({"explain": {"n_examples": 50}})
    with pytest.raises(ConfigError, match=r"corpus.max_doc_tokens \(16\) is shorter than mine.window"):
        build_config({"corpus": {"max_doc_tokens": 16}})
    build_config({"corpus": {"max_doc_tokens": 32}})
    build_config({"corpus": {"max_doc_tokens": None}})


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sae: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_api_key_only_from_environment(monkeypatch):
    cfg = build_config({"llm": {"backend": "openai", "base_url": "http://x/v1", "api_key_env": "MY_KEY"}})
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ValueError, match="MY_KEY"):
        cfg.llm.api_key()
    monkeypatch.setenv("MY_KEY", "secret")
    assert cfg.llm.api_key() == "secret"
    assert "secret" not in dump_config(cfg)


def test_config_is_frozen():
    cfg = RunConfig()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.sae.k = 3  # type: ignore[misc]

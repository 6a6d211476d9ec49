"""The architecture registry is the one list of architectures: the config's values, description and
option checks and the SAELens mapping derive from it, and interp/sae has no import cycle."""
from __future__ import annotations

import pytest

from interp.sae.arch.registry import ARCHITECTURES, TRAINABLE, get_architecture
from interp.sae.config import ARCH_OPTIONS, SAEConfig
from interp.sae.saelens import _FROM_SAELENS
from tests.test_layering import _imports, _modules


def test_config_values_and_description_come_from_the_registry():
    field = SAEConfig.model_fields["architecture"]
    assert SAEConfig.model_json_schema()["properties"]["architecture"]["enum"] == \
        list(ARCHITECTURES)
    for name, arch in ARCHITECTURES.items():
        assert arch.name == name and f"'{name}': {arch.summary}" in field.description
        assert SAEConfig(architecture=name).arch is arch
    assert TRAINABLE == set(ARCHITECTURES) - {"neurons"}
    with pytest.raises(ValueError, match="'nope' is not one of"):
        get_architecture("nope")


def test_architecture_options_are_config_fields_with_named_errors():
    assert set(ARCH_OPTIONS) == {"aux_zipf", "gsae_beta", "sparsity_coeff"}
    assert set(ARCH_OPTIONS) <= set(SAEConfig.model_fields)
    with pytest.raises(ValueError, match=r"sae.sparsity_coeff applies to sae.architecture relu, "
                                         r"jumprelu, not 'topk'"):
        SAEConfig(architecture="topk", sparsity_coeff=1.0)
    assert SAEConfig(architecture="jumprelu").sparsity_penalty == 1e-3
    assert SAEConfig(architecture="relu", sparsity_coeff=0.5).sparsity_penalty == 0.5
    assert SAEConfig(architecture="gsae").sparsity_penalty == 0.0


def test_saelens_names_import_as_one_architecture_each():
    readers = [a.saelens_name for a in ARCHITECTURES.values() if a.saelens_import]
    assert len(readers) == len(set(readers))
    assert _FROM_SAELENS == {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu"}
    exported = {name: a.saelens_name for name, a in ARCHITECTURES.items()}
    assert exported == {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard",
                        "jumprelu": "jumprelu", "feature_choice": "jumprelu",
                        "mutual_choice": "jumprelu", "gsae": "topk", "neurons": None}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                out.append(sorted([v, *comp]))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_in_interp_sae_and_collect_does_not_import_it():
    """Every import counts (lazy and TYPE_CHECKING ones too), as in tests/test_layering.py."""
    mods = _modules()
    sae = {m for m in mods if m == "interp.sae" or m.startswith("interp.sae.")}
    graph = {m: _imports(m, mods[m]) & sae for m in sae}
    assert _cycles(graph) == []
    collect = [m for m in mods if m.startswith("interp.collect.")]
    assert "interp.collect.stage" in collect
    assert not [(m, n) for m in collect for n in _imports(m, mods[m]) if n.startswith("interp.sae")]

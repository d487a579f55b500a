"""The shape of the package: modules reachable under their own names, layouts in one module,
notebooks paired with their jupytext scripts and stored clean."""
import ast
import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest
import torch
import transformers

import helpers
from conftest import tiny_llama

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "helpers"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _modules():
    return [m.name for m in pkgutil.walk_packages([str(PKG)], prefix="helpers.")
            if not m.name.endswith("__main__")]


@pytest.mark.parametrize("name", _modules())
def test_every_module_is_an_attribute_under_its_own_name(name):
    mod = importlib.import_module(name)
    parent, _, child = name.rpartition(".")
    got = getattr(importlib.import_module(parent), child)
    assert got is mod, f"{parent}.{child} is {got!r}, not the module {name} (shadowed?)"


def test_public_functions_and_modules_do_not_collide():
    assert callable(helpers.trace) and callable(helpers.arch)
    assert isinstance(helpers.tracing, types.ModuleType) and helpers.tracing.site_name(3, "resid_post") \
        == "blocks.3.hook_resid_post"
    assert set(helpers.__all__) <= set(dir(helpers))
    # the 0.1 module paths still import (deprecated), without replacing the public functions
    from helpers.trace import site_name  # noqa: F401
    from helpers.arch import LINEAR_NAMES  # noqa: F401
    assert callable(helpers.trace) and callable(helpers.arch)


def test_no_noqa_e402_in_the_package():
    hits = [str(p) for p in PKG.rglob("*.py") if "noqa: E402" in p.read_text()]
    assert not hits, hits


LAYOUT_NAMES = re.compile(r"\b(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|self_attn|"
                          r"input_layernorm|post_attention_layernorm|pre_feedforward_layernorm|"
                          r"post_feedforward_layernorm|head_dim|layer_idx)\b")


def test_layout_names_appear_only_in_the_architecture_module():
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "architectures.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):   # code only: names, attributes and string constants
            text = node.attr if isinstance(node, ast.Attribute) else node.value \
                if isinstance(node, ast.Constant) and isinstance(node.value, str) else \
                node.id if isinstance(node, ast.Name) else None
            if text and LAYOUT_NAMES.search(text) and not isinstance(node, ast.Constant) or \
                    isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    LAYOUT_NAMES.fullmatch(node.value.split(".")[-1] or ""):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
    assert not offenders, offenders


def test_a_duck_typed_family_works_unlisted():
    """Qwen2 has no layout of its own: the Llama layout fits by its module names."""
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    qwen = transformers.Qwen2ForCausalLM(cfg).eval().requires_grad_(False)
    A = helpers.arch(qwen)
    assert A.family == "llama" and A.base is qwen.model
    ids = torch.randint(0, 64, (2, 8))
    before = qwen(input_ids=ids).logits
    with helpers.pruned(qwen, "drop-attn", layers=[1]):
        tr = helpers.trace(qwen, None, ids)
        torch.testing.assert_close(tr.z("blocks.1.hook_resid_post"), tr.output_logits(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(qwen(input_ids=ids).logits, before, rtol=0, atol=0)


def test_registering_a_layout_is_one_descriptor():
    from helpers.architectures import LAYOUTS, Layout, register_layout

    model = tiny_llama(layers=2)
    llama = LAYOUTS["llama"]
    mine = Layout(name="mine", signature=llama.signature, attn=llama.attn, mlp=llama.mlp,
                  attn_out=llama.attn_out, mlp_out=llama.mlp_out, mid_norm=llama.mid_norm,
                  input_groups=llama.input_groups)
    register_layout(mine)
    try:
        assert helpers.arch(model).family == "mine"
    finally:
        from helpers import architectures

        architectures.LAYOUTS.pop("mine")
    assert helpers.arch(model).family == "llama"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired_in_sync_clean_and_has_parameters(nb):
    jupytext = pytest.importorskip("jupytext")
    script = nb.with_suffix(".py")
    assert script.is_file(), f"{nb.name} has no paired script {script.name}"
    a, b = jupytext.read(nb), jupytext.read(script)
    cells = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]  # noqa: E731
    assert cells(a) == cells(b), f"{nb.name} and {script.name} differ: run `make sync`"
    for c in a.cells:
        if c.cell_type == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{nb.name} has outputs"
    code = [c for c in a.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), \
        f"{nb.name}: the first code cell must be tagged 'parameters'"

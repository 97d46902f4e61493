"""The registry discovers the built-in nodes; the product's node types are declared from day one."""

import pytest

from engine.graph.node import Node
from engine.graph.prompt import Prompt
from engine.graph.registry import NodeRegistry
from engine.graph.validation import validate

PRODUCT_NODES = ("MicInput", "Whisper", "LLMPersona", "XTTS", "SadTalker", "ESRGAN", "VideoOut",
                 "LoadImage", "LoadAudio")


@pytest.fixture(scope="module")
def builtin():
    reg = NodeRegistry()
    reg.discover("nodes")
    return reg


def test_product_nodes_registered_with_real_declarations(builtin):
    for name in PRODUCT_NODES:
        cls = builtin.get(name)
        assert issubclass(cls, Node) and cls.CATEGORY.startswith("avatar")
        assert cls.INPUTS and (cls.OUTPUTS or cls.OUTPUT_NODE), name
    assert builtin.get("LoadImage").input_spec("image").upload == "image"
    assert builtin.get("LoadAudio").input_spec("audio").upload == "audio"


def test_unavailable_nodes_fail_validation_clearly(builtin):
    unavailable = [c for c in builtin if c.UNAVAILABLE]
    for cls in unavailable:
        api = {"1": {"class_type": cls.TYPE, "inputs": {}}}
        issues = [i for i in validate(Prompt.from_api(api), builtin).issues if i.type == "not_available"]
        assert issues and "not yet available" in issues[0].message, cls.TYPE


def test_register_rejects_non_nodes():
    with pytest.raises(TypeError):
        NodeRegistry().register(object)  # type: ignore[arg-type]

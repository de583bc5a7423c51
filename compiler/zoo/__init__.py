"""Models Tessera builds itself (no downloads): built-in CNNs and a
transformer block, and onnx's model-zoo topologies with seeded weights."""
from compiler.zoo.light import LIGHT_MODELS, load_light_model
from compiler.zoo.models import mobilenet_v2, resnet, transformer_block

BUILTIN = {
    "resnet18": lambda: resnet(18),
    "resnet10": lambda: resnet(10, image=128, width=32),
    "mobilenet_v2": mobilenet_v2,
    "transformer": transformer_block,
}


def builtin_model(name: str):
    """A built-in model by name: one of BUILTIN, or ``zoo:<light model>``."""
    if name.startswith("zoo:"):
        return load_light_model(name[4:])
    if name not in BUILTIN:
        raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(BUILTIN)} "
                         f"or zoo:{{{','.join(LIGHT_MODELS)}}}")
    return BUILTIN[name]()


__all__ = ["BUILTIN", "LIGHT_MODELS", "builtin_model", "load_light_model", "mobilenet_v2", "resnet",
           "transformer_block"]

"""Models Tessera builds itself (no downloads): built-in CNNs and a
transformer block, onnx's model-zoo topologies with seeded weights, and the
family models written the way their exporters write them."""
from compiler.zoo.families import FAMILY_MODELS
from compiler.zoo.light import LIGHT_MODELS, load_light_model
from compiler.zoo.models import mobilenet_v2, resnet, transformer_block

BUILTIN = {
    "resnet18": lambda: resnet(18),
    "resnet10": lambda: resnet(10, image=128, width=32),
    "mobilenet_v2": mobilenet_v2,
    "transformer": transformer_block,
}


def builtin_model(name: str):
    """A built-in model by name: one of BUILTIN, ``zoo:<light model>`` or
    ``family:<family model>`` (its static form)."""
    if name.startswith("zoo:"):
        return load_light_model(name[4:])
    if name.startswith("family:"):
        if name[7:] not in FAMILY_MODELS:
            raise ValueError(f"unknown family model {name[7:]!r}; choose from {list(FAMILY_MODELS)}")
        return FAMILY_MODELS[name[7:]]()
    if name not in BUILTIN:
        raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(BUILTIN)}, "
                         f"zoo:{{{','.join(LIGHT_MODELS)}}} or family:{{{','.join(FAMILY_MODELS)}}}")
    return BUILTIN[name]()


__all__ = ["BUILTIN", "FAMILY_MODELS", "LIGHT_MODELS", "builtin_model", "load_light_model", "mobilenet_v2",
           "resnet", "transformer_block"]

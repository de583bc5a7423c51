"""The FWDNXT-style Python API (shared/spec/fwdnxt-python-api.md).

    from runtime import FWDNXT
    ie = FWDNXT()
    size = ie.Compile("224x224x3", "model.onnx", "model.bin", samples=images)
    ie.Init("model.bin", "")
    result = np.empty(size, np.float32)
    ie.Run(image, result)                  # the device backend: the simulator here
    ie.GetInfo("hwtime")                   # estimated accelerator milliseconds of that run

Run uses the device backend (with no card attached, the instruction-accurate
simulator; GetInfo('backend') says so), Run_sw always the simulator, Run_th
the float reference program stored in the binary. Compile needs the
compiler (onnx and the rest) and imports it only when called; everything
else needs numpy and numba only. Arguments are checked and every misuse
(wrong shape or dtype, a result buffer of the wrong size, Run before Init, a
call after Free, an unknown flag) raises FWDNXTError saying what is wrong.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from runtime.compiled import CompiledModel
from runtime.engine import Engine
from runtime.errors import TesseraError

VERSION = "tessera-0.1.0"
BACKEND = "simulator"

_FLAGS: dict[str, Any] = {"debug": "w", "nlayers": -1, "hwlinear": 0, "blockingmode": 1, "nobatch": 0,
                          "clustersbatchmode": 0, "imgs_per_cluster": 1, "mvbatch": 0, "fpgaid": "sim"}
"""SetFlag names and their defaults (shared/reference/api-notes.md 1.4)."""


class FWDNXTError(TesseraError):
    """A misuse of the FWDNXT API (the message says which call and why)."""


class FWDNXT:
    """One inference context: Compile a model, Init a binary, Run it."""

    def __init__(self):
        self._flags = dict(_FLAGS)
        self._engine: Engine | None = None
        self._bitfile: str | None = None
        self._freed = False
        self._hwtime = 0.0

    # ------------------------------------------------------------ compile and load
    def Compile(self, image: str, modeldir: str, outfile: str, numcard: int = 1, numclus: int = 1,
                nlayers: int = -1, samples: Sequence | None = None) -> int | tuple[int, ...]:
        """Compile the ONNX model ``modeldir`` for inputs of size ``image``
        ("WxHxC" or an image path) into ``outfile``; ``samples`` are
        calibration inputs (synthetic data, with a warning, without them).
        Returns the number of output values (a tuple for several outputs)."""
        self._alive("Compile")
        try:
            from compiler.compile import compile_model
        except ImportError as exc:
            raise FWDNXTError(f"Compile needs Tessera's compiler and its dependencies (onnx, networkx): {exc}. "
                              "Compile on a machine with `pip install tessera`, then Init the binary here") from exc
        if nlayers == -1 and int(self._flags["nlayers"]) != -1:
            nlayers = int(self._flags["nlayers"])
        from passes.distribute import PlacementError

        flags = self._flags
        try:
            compiled = compile_model(modeldir, image=image, samples=samples, outfile=outfile, numcard=numcard,
                                     numclus=numclus, nlayers=nlayers, hwlinear=bool(int(flags["hwlinear"])),
                                     split=bool(int(flags["clustersbatchmode"]) or int(flags["nobatch"])),
                                     imgs_per_cluster=int(flags["imgs_per_cluster"]),
                                     mvbatch=bool(int(flags["mvbatch"])))
        except PlacementError as exc:
            raise FWDNXTError(f"Compile: {exc}") from exc
        return compiled.output_counts()

    def Init(self, infile: str | os.PathLike, bitfile: str = "") -> int | tuple[int, ...]:
        """Load the binary ``infile`` and prepare to run it. ``bitfile`` is
        recorded (the simulator needs none; "" = use what is loaded)."""
        self._alive("Init")
        from runtime.binary import read_binary

        if not isinstance(bitfile, str):
            raise FWDNXTError(f"Init: bitfile must be a path string or '', got {type(bitfile).__name__}")
        if bitfile and not os.path.isfile(bitfile):
            raise FWDNXTError(f"Init: bitfile {bitfile!r} does not exist")
        model = read_binary(infile)
        self._engine = Engine(model)
        self._bitfile = bitfile or None
        self._debug_init(infile)
        return model.output_counts()

    def _debug_init(self, infile) -> None:
        """SetFlag('debug', ...) letters: 'b' basic prints, 'p' the list of
        accelerator layers (shared/reference/api-notes.md 1.4.3)."""
        letters = str(self._flags["debug"])
        model = self._engine.model
        if "b" in letters:
            print(f"FWDNXT: Init {infile}: {len(model.device_segments)} accelerator segment(s), "
                  f"{len(model.segments) - len(model.device_segments)} CPU segment(s), DRAM {model.dram_size} "
                  f"bytes, backend {BACKEND}")
        if "p" in letters:
            for layer in model.layers:
                print(f"FWDNXT: layer {layer.name} ({layer.op}) instructions {layer.start}-{layer.stop} "
                      f"from {', '.join(layer.onnx_nodes)}")

    def Free(self) -> None:
        """Release the loaded model; any later call is an error."""
        self._engine = None
        self._freed = True

    # ------------------------------------------------------------ flags and info
    def SetFlag(self, name: str, value: Any) -> None:
        """Set a flag (values may be given as strings, as FWDNXT takes them).
        ``debug``: letters, 'b' basic prints, 'p' the layer list at Init;
        ``nlayers`` and ``hwlinear`` apply to the next Compile."""
        self._alive("SetFlag")
        if name not in self._flags:
            raise FWDNXTError(f"SetFlag: unknown flag {name!r}; the flags are {sorted(self._flags)}")
        default = _FLAGS[name]
        if isinstance(default, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise FWDNXTError(f"SetFlag: flag {name!r} takes an integer, got {value!r}") from None
        elif not isinstance(value, str):
            raise FWDNXTError(f"SetFlag: flag {name!r} takes a string, got {value!r}")
        if name == "fpgaid" and value not in ("sim", "-1"):
            raise FWDNXTError(f"SetFlag: fpgaid={value!r}: no card is attached; the only device is 'sim'")
        self._flags[name] = value

    def GetInfo(self, name: str) -> Any:
        """hwtime (ms of the last Run/Run_sw on the accelerator), numcluster,
        numfpga, numbatch, freq (MHz), maxcluster, maxfpga, version, backend,
        inshapes, outshapes, innames, outnames, config (the hardware config
        the binary was compiled for), or any SetFlag name."""
        self._alive("GetInfo")
        if name in self._flags:
            return self._flags[name]
        if name == "version":
            return VERSION
        if name == "backend":
            return BACKEND
        if name == "hwtime":
            return float(self._hwtime)
        model = self._loaded("GetInfo").model
        meta, config = model.metadata, model.config
        info = {
            "numcluster": int(meta.get("placement", {}).get("numclus", 1)),
            "numfpga": int(meta.get("placement", {}).get("numcard", 1)),
            "numbatch": int(model.inputs[0].shape[0]) if model.inputs and model.inputs[0].shape else 1,
            "freq": int(round(config.clock_hz / 1e6)), "maxcluster": config.clusters_per_card,
            "maxfpga": config.cards, "config": config.to_dict(),
            "inshapes": ";".join("x".join(map(str, t.shape)) for t in model.inputs),
            "outshapes": ";".join("x".join(map(str, t.shape)) for t in model.outputs),
            "innames": ";".join(t.name for t in model.inputs),
            "outnames": ";".join(t.name for t in model.outputs),
        }
        if name not in info:
            raise FWDNXTError(f"GetInfo: unknown name {name!r}; known: "
                              f"{sorted([*info, 'hwtime', 'version', 'backend', *self._flags])}")
        return info[name]

    # ------------------------------------------------------------ running
    def Run(self, image, result) -> None:
        """One inference on the device backend (the simulator), ``result``
        (a preallocated float32 array, a tuple for several outputs) filled in place."""
        self._run("Run", image, result, device=True)

    def Run_sw(self, image, result) -> None:
        """One inference on the bit-accurate simulator."""
        self._run("Run_sw", image, result, device=True)

    def Run_th(self, image, result) -> None:
        """One inference of the float reference program on the CPU."""
        self._run("Run_th", image, result, device=False)

    def _run(self, call: str, image, result, device: bool) -> None:
        engine = self._loaded(call)
        model = engine.model
        images = _inputs(call, model, image)
        targets = _results(call, model, result)
        try:
            if device:
                outputs = engine.run_batch(images)
            else:
                outputs = [engine.run_reference(feeds) for feeds in images]
        except TesseraError as exc:
            raise FWDNXTError(f"{call}: {exc}") from exc
        if device:
            self._hwtime = engine.device.hwtime_ms
            if "b" in str(self._flags["debug"]):
                print(f"FWDNXT: {call}: hwtime {self._hwtime:.3f} ms ({engine.device.instructions} instructions)")
        for target, spec in zip(targets, model.outputs):
            flat = target.reshape(len(images), -1)
            for i, out in enumerate(outputs):
                flat[i] = np.asarray(out[spec.name], np.float32).reshape(-1)

    def _alive(self, call: str) -> None:
        if self._freed:
            raise FWDNXTError(f"{call} called after Free(); create a new FWDNXT object")

    def _loaded(self, call: str) -> Engine:
        self._alive(call)
        if self._engine is None:
            raise FWDNXTError(f"{call} called before Init(); load a compiled binary first")
        return self._engine


def _inputs(call: str, model: CompiledModel, image) -> list[dict[str, np.ndarray]]:
    """The feeds of each image of one run, checked: each input a float32
    array of the binary's batch of images concatenated along the batch axis
    (shared/reference/api-notes.md 1.5; for one image of batch 1, the shape
    without its batch dimension will do)."""
    arrays = list(image) if isinstance(image, (tuple, list)) else [image]
    if len(arrays) != len(model.inputs):
        raise FWDNXTError(f"{call}: the model has {len(model.inputs)} input(s) "
                          f"{[t.name for t in model.inputs]}; got {len(arrays)}")
    batch = model.batch
    images = [{} for _ in range(batch)]
    for array, spec in zip(arrays, model.inputs):
        if not isinstance(array, np.ndarray):
            raise FWDNXTError(f"{call}: input {spec.name!r} must be a numpy array, got {type(array).__name__}")
        if array.dtype != np.float32:
            raise FWDNXTError(f"{call}: input {spec.name!r} must be float32, got {array.dtype}")
        shape = spec.shape
        whole = (shape[0] * batch, *shape[1:]) if shape else shape
        if array.shape != whole and not (batch == 1 and shape[:1] == (1,) and array.shape == shape[1:]):
            what = f" ({batch} images of {list(shape)} concatenated along the batch axis)" if batch > 1 else ""
            raise FWDNXTError(f"{call}: input {spec.name!r} must have shape {list(whole)}{what}, got "
                              f"{list(array.shape)}")
        parts = np.ascontiguousarray(array).reshape(batch, *shape)
        for feeds, part in zip(images, parts):
            feeds[spec.name] = part
    return images


def _results(call: str, model: CompiledModel, result) -> list[np.ndarray]:
    """The result buffers, checked: writable float32 arrays of each
    output's number of values times the binary's batch of images."""
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != len(model.outputs):
        raise FWDNXTError(f"{call}: the model has {len(model.outputs)} output(s); got {len(results)} result buffers")
    for array, spec in zip(results, model.outputs):
        size = int(np.prod(spec.shape, dtype=np.int64)) * model.batch
        if not isinstance(array, np.ndarray) or array.dtype != np.float32:
            raise FWDNXTError(f"{call}: the result buffer for {spec.name!r} must be a float32 numpy array, got "
                              f"{getattr(array, 'dtype', type(array).__name__)}")
        if array.size != size:
            per = f" ({model.batch} images of {list(spec.shape)})" if model.batch > 1 else f" ({list(spec.shape)})"
            raise FWDNXTError(f"{call}: the result buffer for {spec.name!r} has {array.size} values; the output has "
                              f"{size}{per}")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise FWDNXTError(f"{call}: the result buffer for {spec.name!r} must be C-contiguous and writable")
    return results

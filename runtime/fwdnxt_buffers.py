"""The FWDNXT API's flat buffers (api-notes 1.2, 1.5, 1.7): each run's
input arrays checked and split into the feeds of the binary's images, the
result buffers checked, the outputs written into them, and the sizes
Compile, Init and GetInfo report."""
from __future__ import annotations

import math

import numpy as np

from runtime.compiled import CompiledModel
from runtime.fwdnxt_flags import FWDNXTError

_F32 = np.dtype(np.float32)


def sizes(model: CompiledModel, images: int) -> int | tuple[int, ...]:
    """Output values of ``images`` images of each output (an int for one output)."""
    counts = tuple(int(np.prod(t.shape, dtype=np.int64)) * images for t in model.outputs)
    return counts[0] if len(counts) == 1 else counts


def per_image(model: CompiledModel) -> int | tuple[int, ...]:
    return sizes(model, 1)


def per_cluster(model: CompiledModel) -> int | tuple[int, ...]:
    """Compile's return value: the outputs of one cluster's images (api-notes 1.5)."""
    placement = model.metadata.get("placement", {})
    per_cluster = placement.get("imgs_per_cluster", 1) if placement.get("mode", "batch") == "batch" else 1
    return sizes(model, per_cluster if isinstance(per_cluster, int) and per_cluster >= 1 else 1)


def inputs(call: str, model: CompiledModel, image, copy: bool = False) -> list[dict[str, np.ndarray]]:
    """The feeds of each image of one run, checked. FWDNXT took its inputs
    by size (api-notes 1.2, 1.7: a float32 buffer and its element count):
    each input is any float32 array holding the binary's batch of images,
    one after the other (NCHW, CHW, flat, or the images of a batch-mode
    binary concatenated); only its number of values must be right.
    ``copy``: never views of the caller's arrays."""
    if type(image) is np.ndarray and (image.dtype is _F32 or image.dtype == _F32) and len(model.inputs) == 1 \
            and model.batch == 1:
        spec = model.inputs[0]  # the usual call: one float32 array of the one input's values
        if image.shape == spec.shape and not copy and image.flags.c_contiguous:
            return [{spec.name: image}]
        if spec.shape and image.size == math.prod(spec.shape):
            return [{spec.name: (np.array(image, order="C") if copy else np.ascontiguousarray(image)
                                 ).reshape(spec.shape)}]
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
        expected = math.prod(whole)
        if array.size != expected:
            what = f" ({batch} images of {list(shape)} concatenated along the batch axis)" if batch > 1 else ""
            raise FWDNXTError(f"{call}: input {spec.name!r} must have shape {list(whole)}{what}, got "
                              f"{list(array.shape)}: {array.size} values where {expected} are expected (any "
                              f"float32 array of {expected} values will do: NCHW, CHW or flat)")
        parts = (np.array(array, order="C") if copy else np.ascontiguousarray(array)).reshape(batch, *shape)
        for feeds, part in zip(images, parts):
            feeds[spec.name] = part
    return images


def results(call: str, model: CompiledModel, result) -> list[np.ndarray]:
    """The result buffers, checked: writable float32 arrays of each
    output's number of values times the binary's batch of images."""
    if type(result) is np.ndarray and len(model.outputs) == 1 and (result.dtype is _F32 or result.dtype == _F32):
        flags = result.flags  # the usual call: one float32 buffer for the one output
        if flags.c_contiguous and flags.writeable and result.size == math.prod(model.outputs[0].shape) * model.batch:
            return [result]
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != len(model.outputs):
        raise FWDNXTError(f"{call}: the model has {len(model.outputs)} output(s); got {len(results)} result buffers")
    for array, spec in zip(results, model.outputs):
        size = math.prod(spec.shape) * model.batch
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


def destinations(model: CompiledModel, targets: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per image, each output's part of the result buffers ``targets``
    (:func:`results` checked them; the one buffer of a one-output,
    one-image binary as it is, flat or not): where a run
    writes its outputs straight into them (Engine.run_batch's ``into``),
    :func:`fill` has nothing left to copy."""
    if len(targets) == 1 and model.batch == 1:  # the buffer itself: a run writes its values, whatever its shape
        return [{model.outputs[0].name: targets[0]}]
    images = [{} for _ in range(model.batch)]
    for target, spec in zip(targets, model.outputs):
        for feeds, part in zip(images, target.reshape(model.batch, *spec.shape)):
            feeds[spec.name] = part
    return images


def fill(model: CompiledModel, targets: list[np.ndarray], outputs: list[dict[str, np.ndarray]],
         written: list[dict[str, np.ndarray]] | None = None) -> None:
    """Each image's outputs into its part of the result buffers, but those
    the run wrote there already (an output that is its array in
    ``written``, the :func:`destinations` the run was given)."""
    if len(outputs) == 1 and len(targets) == 1:  # the usual call: one image, one output
        name, target = model.outputs[0].name, targets[0]
        value = outputs[0][name]
        if written is not None and value is written[0][name]:
            return
        if type(value) is np.ndarray and value.dtype == np.float32 and value.size == target.size:
            target.reshape(-1)[:] = value.reshape(-1)
            return
    for target, spec in zip(targets, model.outputs):
        flat = target.reshape(len(outputs), -1)
        for i, out in enumerate(outputs):
            if written is not None and out[spec.name] is written[i][spec.name]:
                continue
            value = np.asarray(out[spec.name], np.float32)
            if value.size != flat.shape[1]:  # a data-dependent CPU output the binary's META misdeclares
                raise FWDNXTError(f"output {spec.name!r} came out with shape {list(value.shape)}; the binary "
                                  f"declares {list(spec.shape)}")
            flat[i] = value.reshape(-1)

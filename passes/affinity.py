"""The affinity pass: the device each top-level node runs on.

It follows OpenVINO's HETERO plugin (shared/reference/api-notes.md 2.4). With
no affinity set anywhere, the fallback policy applies: each node goes to the
first device of ``partition.fallback`` ("HETERO:FPGA,CPU") that supports it.
If any node already has an affinity, the policy is not applied at all: every
node must have one, on a device that can run it. Option
``partition.affinities`` gives them by ONNX node name (what an
Inference-Engine user sets on IENetLayer.affinity).

Linear layers (Gemm/MatMul with constant weights) follow ``target.hwlinear``:
True and False put them on the accelerator and the CPU (FWDNXT's flag);
unset (the default), :class:`AutoLinear` puts one on the accelerator when
it feeds an accelerator node (no device segment of its own) and the
placement costs (passes/placement_costs.py) say the accelerator, with the
transfers either placement needs, is faster; one whose result goes only to
the host stays in float.

Each node not on the first (preferred) device records why in
``annotations["cpu_reason"]``. A manual affinity that differs from the
policy's choice marks its node ``annotations["manual_affinity"] = True``, so
later passes leave it where the user put it; re-running the pass on its own
output changes nothing.

The same functions answer the layer-level APIs before any compile
(compiler/network.py's query_network, and through it the Inference
Engine's QueryNetwork, SetAffinity and affinity checks): one policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from ir.graph import Graph, Node, Value, onnx_name
from passes.infra import PassContext, graph_pass, register_option
from passes.placement_costs import cpu_time, device_time, transfer_time
from passes.target import (
    SUPPORTED,
    VIEW_OPS,
    Support,
    Target,
    TargetError,
    hwlinear_option,
    is_linear_layer,
    make_target,
)
from runtime import hardware
from runtime.hardware import ACCELERATOR, DEVICES, HOST, DeviceListError, HardwareConfig

REASON = "cpu_reason"
RULE = "cpu_rule"
MANUAL = "manual_affinity"
HOST_ONLY = "host_only"
"""A node a pass marks for the host (the annotation's value says why): the
policy puts it on the CPU when the fallback lists the CPU."""
_SHOWN = 10

register_option("quant.float_layers", tuple, (),
                "ONNX node names kept in float32: the affinity pass puts them on the CPU")
register_option("quant.host_outputs", tuple, (),
                "ONNX node names of outputs' final pointwise functions (Sigmoid, Softmax over the last axis, Exp, "
                "HardSigmoid, Tanh) run in float32 on the host on the pre-activation codes the accelerator hands "
                "over (a host epilogue; compiler/target_snr.py chooses them)")
register_option("partition.host_layers", dict, {},
                "ONNX node name -> why: layers the compiler itself moves to the CPU (one the tile pass found no "
                "tiling for: compiler/quantize.py); the fallback policy puts them there with that reason")
register_option("partition.affinities", dict, {},
                "Manual affinities by ONNX node name (OpenVINO's IENetLayer.affinity): when given, the fallback "
                "policy is off and every node must come from a node named here")


class AffinityError(TargetError):
    """Affinities are missing, name an unknown device, or put a node where it cannot run."""


def parse_fallback(text: str) -> list[str]:
    """The device list of a fallback string: 'HETERO:FPGA,CPU' or 'FPGA,CPU'
    (runtime.hardware.parse_fallback, its errors as AffinityError)."""
    try:
        return list(hardware.parse_fallback(text))
    except DeviceListError as exc:
        raise AffinityError(str(exc)) from None


def check_affinities(given: Mapping[str, str], layers: Iterable[str], devices: Sequence[str] = DEVICES
                     ) -> dict[str, str]:
    """The user's affinities by layer name (api-notes 2.4), checked: with
    none given the fallback policy runs; with any given, every one of
    ``layers`` needs one, each on one of ``devices``."""
    for name, device in given.items():
        if device not in devices:
            raise AffinityError(f"layer {name!r} has affinity {device!r}, which is not one of the devices "
                                f"{list(devices)}")
    missing = [name for name in dict.fromkeys(layers) if name not in given]
    if given and missing:
        raise AffinityError(f"some layers have an affinity, so every layer needs one; {len(missing)} have none: "
                            f"{_listing(missing)}")
    return dict(given)


def layer_support(nodes: Iterable[Node], target: Target) -> Support:
    """Whether ``target`` runs every one of ``nodes``: SUPPORTED, or its first refusal."""
    return next((support for support in map(target.supports, nodes) if not support), SUPPORTED)


def choose_device(nodes: Sequence[Node], fallback: Sequence[Target]) -> tuple[str | None, dict[str, Support]]:
    """The policy: the first device of ``fallback`` that runs every one of
    ``nodes`` (one node, or the nodes an ONNX layer became), None if none
    does; and why each device before it does not."""
    refusals: dict[str, Support] = {}
    for target in fallback:
        support = layer_support(nodes, target)
        if support:
            return target.name, refusals
        refusals[target.name] = support
    return None, refusals


AUTO_LINEAR_RULE = "passes/affinity.py:AutoLinear"


@dataclass(frozen=True)
class AutoLinear:
    """``target.hwlinear`` unset: where a linear layer the accelerator
    supports pays. It goes to the accelerator when a consumer of its
    output is there (so it joins that segment, adding none) and the
    accelerator's time for it plus the host-link transfers that placement
    needs is less than the CPU's time plus the transfers that one needs
    (placement_costs). A layer whose result goes to the host only (a model
    output, CPU consumers, or a Softmax that makes a model output: a
    classifier's head) stays in float: an int8 output grid, calibrated on
    a few inputs, clips the largest values, the winning class's logit
    among them."""

    hardware: HardwareConfig

    def reason(self, node: Node, graph: Graph, device_of: Callable[[Node], str | None],
               accelerator: Target) -> str | None:
        """Why ``node`` stays on the CPU; None when the accelerator pays."""
        tensors = [v for v in node.inputs if v is not None and not v.is_constant]
        from_device = [v for v in tensors if v.producer is not None and device_of(v.producer) == ACCELERATOR]
        users = [user for value in node.outputs for user, _ in value.uses]
        device_users = [user for user in users if accelerator.supports(user) and not _normalises_for_host(user, graph)]
        if not device_users:
            return (f"{node.op} (a linear layer) writes its result for the host only (a model output or CPU "
                    "consumers): kept in float, as an int8 grid calibrated on a few inputs clips the largest values "
                    "(target.hwlinear unset; True puts it on the accelerator)")
        to_host = len(device_users) < len(users) or any(value in graph.outputs for value in node.outputs)
        out = sum(transfer_time(v.type, self.hardware) for v in node.outputs)
        on_device = device_time(node, self.hardware) + (out if to_host else 0.0) + sum(
            transfer_time(v.type, self.hardware) for v in tensors if v not in from_device)
        on_cpu = cpu_time(node) + out + sum(transfer_time(v.type, self.hardware) for v in from_device)
        if on_device < on_cpu:
            return None
        return (f"{node.op} (a linear layer) is faster on the CPU: {on_cpu * 1e6:.1f} us there, "
                f"{on_device * 1e6:.1f} us on the accelerator with its transfers (target.hwlinear unset; "
                "True puts it there)")


OUTPUT_SOFTMAX_RULE = "passes/affinity.py:output_softmax_refusal"


def _normalises_for_host(node: Node, graph: Graph) -> bool:
    """A Softmax whose result is only model outputs, reached directly or
    through views and Transposes (the Reshapes around an opset-11 Softmax
    over axis 1): a classifier's or a head's probabilities."""
    return node.op == "Softmax" and all(_only_outputs(value, graph) for value in node.outputs)


REARRANGING = VIEW_OPS | {"Transpose"}
"""Nodes that only rearrange a tensor's elements."""


def _only_outputs(value: Value, graph: Graph) -> bool:
    """``value`` reaches nothing but model outputs: it is one, and every
    node reading it is a view, a Transpose or a join of a head's parts on
    the host (quant.head_grids: YOLO's Concat of boxes and Sigmoid scores)
    whose results do the same."""
    if not value.uses:
        return value in graph.outputs
    return all((user.op in REARRANGING or HOST_ONLY in user.annotations)
               and all(_only_outputs(out, graph) for out in user.outputs) for user, _ in value.uses)


def output_softmax_refusal(node: Node, graph: Graph, fallback: Sequence[Target]) -> Support | None:
    """Why a Softmax that makes model outputs runs on the CPU although the
    accelerator has SOFTMAX (which attention inside a network uses): its
    probabilities would leave the device on an int8 grid, where every class
    below 1/256 reads 0 and the ranking of the top classes is lost; on the
    host it is float32 of the same logits, no extra transfer (the logits
    leave instead of the probabilities). None when the fallback has no CPU
    that runs it, or for any other node. The linear layer before such a
    Softmax has no accelerator consumer (:class:`AutoLinear`)."""
    host = _host(fallback)
    if not _normalises_for_host(node, graph) or host is None or not host.supports(node):
        return None
    return Support(False, "Softmax making a model output runs in float32 on the host: on the accelerator its "
                          "probabilities would leave on an int8 grid (classes below 1/256 read 0)",
                   OUTPUT_SOFTMAX_RULE)


def _host(fallback: Sequence[Target]) -> Target | None:
    """The CPU target of ``fallback``, None when it lists none."""
    return next((t for t in fallback if t.name == HOST), None)


def auto_linear(ctx: PassContext) -> AutoLinear | None:
    """The linear-layer policy when ``target.hwlinear`` is unset, else None."""
    return AutoLinear(ctx.option("target.hardware")) if hwlinear_option(ctx) is None else None


def linear_refusal(nodes: Sequence[Node], graph: Graph, device_of: Callable[[Node], str | None],
                   fallback: Sequence[Target], policy: AutoLinear | None) -> Support | None:
    """Why ``nodes``, which the fallback policy put on the accelerator, go
    to the CPU instead: a linear layer among them that does not pay there
    (``policy``), when the fallback lists a CPU that runs them; else None."""
    host = _host(fallback)
    if policy is None or host is None or not layer_support(nodes, host):
        return None
    for node in nodes:
        why = policy.reason(node, graph, device_of, fallback[0]) if is_linear_layer(node) else None
        if why:
            return Support(False, why, AUTO_LINEAR_RULE)
    return None


@graph_pass(opt_level=0)
def assign_affinity(graph: Graph, ctx: PassContext) -> Graph:
    """Set ``node.affinity`` on every top-level node: the fallback policy,
    or checked manual affinities when any node already has one."""
    targets = {name: make_target(name, ctx) for name in DEVICES}
    fallback = [targets[name] for name in parse_fallback(ctx.option("partition.fallback"))]
    _apply_manual(graph, dict(ctx.option("partition.affinities")))
    if any(node.affinity for node in graph.nodes):
        _check_manual(graph, targets, fallback, auto_linear(ctx))
    else:
        host_layers = {**dict(ctx.option("partition.host_layers")), **host_epilogues(graph,
                                                                                     ctx.option("quant.host_outputs"))}
        _apply_fallback(graph, fallback, set(ctx.option("quant.float_layers")), host_layers, auto_linear(ctx))
    return graph


EPILOGUE_OPS = frozenset({"Sigmoid", "Softmax", "Exp", "HardSigmoid", "Tanh"})
"""Final pointwise functions of a head that a host epilogue runs (Softmax over the last axis only)."""


def epilogue_reason(op: str) -> str:
    """Why a host epilogue's node runs on the CPU (its ``cpu_reason``)."""
    return (f"output precision: the head's final {op} runs in float on the host, on the pre-activation codes the "
            "accelerator hands over (quant.host_outputs, chosen by quant.target_snr or given)")


def is_epilogue(node: Node, graph: Graph) -> bool:
    """``node`` is an output's final pointwise function: one of
    :data:`EPILOGUE_OPS` (a Softmax over the last axis) whose result
    reaches nothing but model outputs (directly or through views and
    Transposes)."""
    if node.op not in EPILOGUE_OPS or len(node.outputs) != 1:
        return False
    if node.op == "Softmax":
        rank = len(node.outputs[0].type.shape)
        if node.attrs.get("axis", -1) not in (-1, rank - 1):
            return False
    return _only_outputs(node.outputs[0], graph)


def host_epilogues(graph: Graph, names: Iterable[str]) -> dict[str, str]:
    """ONNX node name -> why, for the host epilogues ``names`` lists
    (``quant.host_outputs``); an error names one that is not an output's
    final pointwise function."""
    wanted = set(names)
    found: dict[str, str] = {}
    for node in graph.nodes:
        name = onnx_name(node.name)
        if name not in wanted:
            continue
        if not is_epilogue(node, graph):
            raise AffinityError(f"quant.host_outputs names {node.op} node {name!r}, which is not an output's final "
                                f"pointwise function (one of {sorted(EPILOGUE_OPS)}, Softmax over the last axis, "
                                "whose result is only model outputs)")
        found[name] = epilogue_reason(node.op)
    missing = sorted(wanted - found.keys())
    if missing:
        raise AffinityError(f"quant.host_outputs names {missing[0]!r}, which is no node of the model")
    return found


def _apply_manual(graph: Graph, affinities: dict[str, str]) -> None:
    """Each node takes the affinity given for the ONNX node it comes from;
    with any given, every node needs one (api-notes 2.4: a layer without
    one is an error, named)."""
    if not affinities:
        return
    check_affinities(affinities, sorted({onnx_name(node.name) for node in graph.nodes}))
    for node in graph.nodes:
        node.affinity = affinities[onnx_name(node.name)]


def _apply_fallback(graph: Graph, fallback: list[Target], float_layers: set[str], host_layers: dict[str, str],
                    linear: AutoLinear | None) -> None:
    """The policy; nodes the user keeps in float, nodes of the layers the
    compiler moves to the host (``host_layers``: ONNX name -> why), and
    nodes a pass marked ``host_only``, go to the CPU (which runs float32);
    linear layers as ``linear`` says when hwlinear is unset."""
    host = _host(fallback)
    for node in graph.nodes:
        if onnx_name(node.name) in host_layers and host is not None and host.supports(node):
            node.affinity = HOST
            _record_reason(node, host_layers[onnx_name(node.name)])
            continue
        if onnx_name(node.name) in float_layers and host is not None:
            node.affinity = HOST
            _record_reason(node, "kept in float32 by the user (quant.float_layers)")
            continue
        if node.annotations.get(HOST_ONLY) and host is not None and host.supports(node):
            node.affinity = HOST
            _record_reason(node, node.annotations[HOST_ONLY])
            continue
        device, why = _policy(node, graph, fallback, linear)
        if device is None:
            raise AffinityError(f"{node.op} node {node.name!r} can run on none of {[t.name for t in fallback]}: "
                                f"{why}")
        node.affinity = device
        node.annotations.pop(MANUAL, None)
        _record_reason(node, why)


def _policy(node: Node, graph: Graph, fallback: list[Target], linear: AutoLinear | None
            ) -> tuple[str | None, Support | str | None]:
    """The device the fallback policy gives ``node`` (its producers placed)
    and why it is not the first one (all refusals when no device runs it)."""
    device, refusals = choose_device([node], fallback)
    if device is None:
        return None, "; ".join(f"{name}: {support.reason}" for name, support in refusals.items())
    refusal = accelerator_refusal([node], graph, _affinity, fallback, linear) if device == ACCELERATOR else None
    return (HOST, refusal) if refusal is not None else (device, refusals.get(fallback[0].name))


def accelerator_refusal(nodes: Sequence[Node], graph: Graph, device_of: Callable[[Node], str | None],
                        fallback: Sequence[Target], linear: AutoLinear | None) -> Support | None:
    """Why ``nodes`` (one node, or the nodes an ONNX layer became), which
    the accelerator runs, go to the CPU by the policy: a Softmax making a
    model output, a linear layer that does not pay there; None when they
    stay. The affinity pass and the IE's QueryNetwork both ask this."""
    for node in nodes:
        refusal = output_softmax_refusal(node, graph, fallback)
        if refusal is not None:
            return refusal
    return linear_refusal(nodes, graph, device_of, fallback, linear)


def _affinity(node: Node) -> str | None:
    return node.affinity


def _check_manual(graph: Graph, targets: dict[str, Target], fallback: list[Target], linear: AutoLinear | None
                  ) -> None:
    """Every node has a device that can run it; those differing from the
    policy's choice are marked manual (a linear layer the policy keeps on
    the CPU keeps that reason there)."""
    unassigned = [node.name for node in graph.nodes if not node.affinity]
    if unassigned:
        raise AffinityError(f"some nodes have an affinity, so the fallback policy is off and every node needs "
                            f"one; {len(unassigned)} have none: {_listing(unassigned)}")
    for node in graph.nodes:
        target = targets.get(node.affinity)
        if target is None:
            raise AffinityError(f"{node.op} node {node.name!r} has affinity {node.affinity!r}; "
                                f"the devices are {list(targets)}")
        support = target.supports(node)
        if not support:
            raise AffinityError(f"{node.op} node {node.name!r} has affinity {node.affinity!r}, "
                                f"which cannot run it: {support.reason}")
        device, why = _policy(node, graph, fallback, linear)
        _mark_manual(node, device != node.affinity)
        _record_reason(node, why if device == node.affinity else _manual_reason(node, fallback[0]))


def _mark_manual(node: Node, manual: bool) -> None:
    node.annotations.pop(MANUAL, None)
    if manual:
        node.annotations[MANUAL] = True


def _manual_reason(node: Node, preferred: Target) -> Support | str | None:
    if node.affinity == preferred.name:
        return None
    support = preferred.supports(node)
    return support if not support else f"placed on {node.affinity} by hand"


def _record_reason(node: Node, why: Support | str | None) -> None:
    """``annotations["cpu_reason"]`` (and, for a target's refusal, the rule
    that refused: ``annotations["cpu_rule"]``)."""
    node.annotations.pop(REASON, None)
    node.annotations.pop(RULE, None)
    if isinstance(why, Support):
        node.annotations[REASON] = why.reason
        if why.rule:
            node.annotations[RULE] = why.rule
    elif why:
        node.annotations[REASON] = why


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")

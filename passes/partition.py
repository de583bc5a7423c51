"""The partition pass: single-device segments, cycle-free by construction.

Nodes are visited in topological order; each starts as its own group and is
merged into the groups of its same-device producers when that creates no
cycle. A merge of groups A and B creates one exactly when some other group
lies on a path between them, so every group keeps, as bitsets over node
positions, the nodes of the groups it reaches and of those reaching it; the
check before each merge is two ANDs, and a merge updates only the groups
related to it (TVM's MergeCompilerRegions restrictions and torch.fx's
partitioner after PyTorch #86511, made incremental).

With ``partition.demote_islands``, an accelerator segment whose neighbours
all run on the CPU moves to the CPU when the host-link transfers it needs
cost more than the accelerator saves (placement costs: passes.placement_costs).

The graph is then rewritten into ``Segment`` nodes in a topological order of
segments. A body keeps its nodes' names, affinities and annotations (the
"why on the CPU" reasons), has the constants it uses copied in, takes the
values crossing into it as inputs and returns the values later segments or
the graph outputs use.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterator

from ir.graph import Graph, Node, Value, carry_quant, onnx_name
from passes.affinity import HOST_ONLY, MANUAL, REASON, RULE
from passes.infra import PassContext, PassError, graph_pass
from passes.placement_costs import cpu_time, device_time, transfer_time
from passes.target import cpu
from runtime.hardware import ACCELERATOR, HOST, HardwareConfig


@dataclass(frozen=True)
class SegmentInfo:
    """One segment for tooling: its device, node names, and the names of the
    values crossing into it and out of it."""

    device: str
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass
class _Segment:
    device: str
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]


@graph_pass(opt_level=0, required=("assign_affinity",))
def partition(graph: Graph, ctx: PassContext) -> Graph:
    """Group the nodes into cycle-free single-device segments and rewrite
    the graph as a sequence of ``Segment`` nodes."""
    if _is_partitioned(graph):
        return graph
    plan = _plan(graph)
    while ctx.option("partition.demote_islands") and _demote_islands(plan, ctx.option("target.hardware")):
        plan = _plan(graph)
    return _rewrite(graph, plan)


def segments(graph: Graph) -> list[SegmentInfo]:
    """The segments of a partitioned graph (read from its Segment nodes), or
    those the pass would make from the nodes' affinities (nothing rewritten)."""
    if _is_partitioned(graph):
        return [_info(n.attrs["device"], n.attrs["body"].nodes, n.inputs, n.outputs) for n in graph.nodes]
    return [_info(s.device, s.nodes, s.inputs, s.outputs) for s in _plan(graph)]


def _info(device: str, nodes: list[Node], inputs: list[Value], outputs: list[Value]) -> SegmentInfo:
    return SegmentInfo(device, tuple(n.name for n in nodes), tuple(v.name for v in inputs),
                       tuple(v.name for v in outputs))


def _is_partitioned(graph: Graph) -> bool:
    return bool(graph.nodes) and all(node.op == "Segment" for node in graph.nodes)


# ---------------------------------------------------------------- grouping

class _Groups:
    """Union-find groups of node positions with exact reachability between
    groups: ``up[g]`` holds the nodes of every group reaching g, ``down[g]``
    those of every group g reaches (bitsets; a group's own nodes excluded)."""

    def __init__(self, count: int):
        self.parent = list(range(count))
        self.members = [1 << i for i in range(count)]
        self.up = [0] * count
        self.down = [0] * count

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def add(self, i: int, producers: list[int]) -> None:
        """Node ``i`` becomes a group of its own, after its producers."""
        up = 0
        for root in {self.find(p) for p in producers}:
            up |= self.members[root] | self.up[root]
        self.up[i] = up
        for root in self._roots(up):
            self.down[root] |= self.members[i]

    def can_merge(self, a: int, b: int) -> bool:
        """No third group lies on a path between the groups of a and b."""
        a, b = self.find(a), self.find(b)
        return not (self.down[a] & self.up[b] or self.down[b] & self.up[a])

    def merge(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        members = self.members[a] | self.members[b]
        up = (self.up[a] | self.up[b]) & ~members
        down = (self.down[a] | self.down[b]) & ~members
        self.parent[b] = a
        self.members[a], self.up[a], self.down[a] = members, up, down
        for root in self._roots(up):
            self.down[root] |= members | down
        for root in self._roots(down):
            self.up[root] |= members | up

    def _roots(self, bits: int) -> Iterator[int]:
        """The groups whose nodes make up ``bits``."""
        while bits:
            root = self.find((bits & -bits).bit_length() - 1)
            yield root
            bits &= ~self.members[root]


def _plan(graph: Graph) -> list[_Segment]:
    """Maximal cycle-free single-device segments, in a topological order."""
    position = {node: i for i, node in enumerate(graph.nodes)}
    groups = _Groups(len(graph.nodes))
    for i, node in enumerate(graph.nodes):
        if not node.affinity:
            raise PassError(f"{node.op} node {node.name!r} has no affinity; run assign_affinity first")
        producers = list(dict.fromkeys(position[v.producer] for v in node.inputs
                                       if v is not None and v.producer is not None))
        groups.add(i, producers)
        for p in producers:
            if (graph.nodes[p].affinity == node.affinity and groups.find(p) != groups.find(i)
                    and groups.can_merge(p, i)):
                groups.merge(p, i)
    return [_segment(graph, nodes) for nodes in _ordered(graph, groups, position)]


def _ordered(graph: Graph, groups: _Groups, position: dict[Node, int]) -> list[list[Node]]:
    """The groups' nodes, groups sorted topologically (earliest node first on ties)."""
    members: dict[int, list[Node]] = {}
    for node in graph.nodes:
        members.setdefault(groups.find(position[node]), []).append(node)
    successors: dict[int, set[int]] = {root: set() for root in members}
    indegree = dict.fromkeys(members, 0)
    for node in graph.nodes:
        root = groups.find(position[node])
        for value in node.inputs:
            if value is not None and value.producer is not None:
                source = groups.find(position[value.producer])
                if source != root and root not in successors[source]:
                    successors[source].add(root)
                    indegree[root] += 1
    first = {root: position[nodes[0]] for root, nodes in members.items()}
    ready = [(first[r], r) for r, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, root = heapq.heappop(ready)
        order.append(members[root])
        for succ in successors[root]:
            indegree[succ] -= 1
            if indegree[succ] == 0:
                heapq.heappush(ready, (first[succ], succ))
    if len(order) != len(members):
        raise PassError(f"partitioning graph {graph.name!r} made a cycle between segments (a partitioner bug)")
    return order


def _segment(graph: Graph, nodes: list[Node]) -> _Segment:
    """A segment's crossing values: inputs made elsewhere (constants stay
    inside), outputs used elsewhere or returned by the graph."""
    inside = set(nodes)
    returned = {id(v) for v in graph.outputs}
    inputs = list(dict.fromkeys(v for n in nodes for v in n.inputs
                                if v is not None and not v.is_constant and v.producer not in inside))
    outputs = [v for n in nodes for v in n.outputs
               if id(v) in returned or any(user not in inside for user in v.users)]
    return _Segment(nodes[0].affinity, nodes, inputs, outputs or [nodes[-1].outputs[0]])


# ---------------------------------------------------------------- islands

def _demote_islands(plan: list[_Segment], hardware: HardwareConfig) -> bool:
    """Move to the CPU each accelerator island (a segment whose neighbours
    all run on the CPU) that does not pay for its transfers; True when any
    moved. Graph inputs and outputs are on the host, but alone make no island;
    nor does a node marked ``host_only`` reading the segment (a join of
    outputs on their own grids: the outputs it reads leave the device anyway)."""
    device_of = {node: seg.device for seg in plan for node in seg.nodes}
    moved = False
    for seg in plan:
        inside = set(seg.nodes)
        neighbours = {device_of[v.producer] for v in seg.inputs if v.producer is not None}
        neighbours |= {device_of[user] for v in seg.outputs for user in v.users
                       if user not in inside and not _host_join(user)}
        if seg.device != HOST and neighbours == {HOST} and _movable(seg):
            moved |= _demote_if_slower(seg, hardware)
    return moved


def _host_join(node: Node) -> bool:
    """A node (or a Fused group of nodes) a pass marked ``host_only``."""
    members = node.attrs["body"].nodes if node.op == "Fused" else [node]
    return all(member.annotations.get(HOST_ONLY) for member in members)


def _movable(seg: _Segment) -> bool:
    host = cpu()
    return all(not node.annotations.get(MANUAL) and host.supports(node) for node in seg.nodes)


def _demote_if_slower(seg: _Segment, hardware: HardwareConfig) -> bool:
    transfers = sum(transfer_time(v.type, hardware) for v in seg.inputs + seg.outputs)
    saved = sum(cpu_time(n) - device_time(n, hardware) for n in seg.nodes)
    if transfers <= saved:
        return False
    members = [[node, *(node.attrs["body"].nodes if node.op == "Fused" else ())] for node in seg.nodes]
    count = len({onnx_name(m.name) for group in members for m in group[1:] or group})
    reason = (f"{seg.device} island of {count} node(s) between CPU segments moved to the CPU: its "
              f"transfers take {transfers * 1e6:.1f} us, the {seg.device} saves {saved * 1e6:.1f} us")
    for group in members:
        for member in group:
            member.affinity = HOST
            member.annotations[REASON] = reason
            member.annotations[RULE] = ISLAND_RULE
    return True


ISLAND_RULE = "passes/partition.py:_demote_if_slower (option partition.demote_islands)"


# ---------------------------------------------------------------- rewriting

def _rewrite(graph: Graph, plan: list[_Segment]) -> Graph:
    """A new graph of Segment nodes, one per planned segment, in order."""
    out = Graph(graph.name)
    outer: dict[int, Value] = {id(v): out.add_input(v.name, v.type) for v in graph.inputs}
    carry_quant(graph.inputs, out.inputs)
    for index, seg in enumerate(plan):
        node = out.add_node("Segment", [outer[id(v)] for v in seg.inputs],
                            {"body": _body(graph, seg, index), "device": seg.device}, name=f"segment{index}",
                            output_names=[v.name for v in seg.outputs], output_types=[v.type for v in seg.outputs])
        node.affinity = seg.device
        carry_quant(seg.outputs, node.outputs)
        outer.update((id(old), new) for old, new in zip(seg.outputs, node.outputs))
    out.outputs = [_outer_value(out, v, outer) for v in graph.outputs]
    return out


def _outer_value(out: Graph, value: Value, outer: dict[int, Value]) -> Value:
    """The new graph's value for an output (a returned constant is copied)."""
    if id(value) not in outer:
        outer[id(value)] = out.add_constant(value.const, value.name)
    return outer[id(value)]


def _body(graph: Graph, seg: _Segment, index: int) -> Graph:
    """The segment's nodes in a graph of their own, names kept."""
    body = Graph(f"{graph.name}.segment{index}")
    inner: dict[int, Value] = {id(v): body.add_input(v.name, v.type) for v in seg.inputs}
    carry_quant(seg.inputs, body.inputs)
    for node in seg.nodes:
        inputs = [None if v is None else _inner_value(body, v, inner) for v in node.inputs]
        copy = body.add_node(node.op, inputs, node.attrs, name=node.name,
                             output_names=[v.name for v in node.outputs], output_types=[v.type for v in node.outputs])
        copy.affinity = node.affinity
        copy.annotations = dict(node.annotations)
        carry_quant(node.outputs, copy.outputs)
        inner.update((id(old), new) for old, new in zip(node.outputs, copy.outputs))
    body.outputs = [inner[id(v)] for v in seg.outputs]
    return body


def _inner_value(body: Graph, value: Value, inner: dict[int, Value]) -> Value:
    if id(value) not in inner:  # only constants are not mapped yet
        inner[id(value)] = body.add_constant(value.const, value.name)
        inner[id(value)].quant = value.quant  # a given weight grid travels with its weights
    return inner[id(value)]


def accelerator_segments(graph: Graph) -> list[Node]:
    """The graph's accelerator Segment nodes (the partition pass's), in order."""
    return [n for n in graph.nodes if n.op == "Segment" and n.attrs["device"] == ACCELERATOR]

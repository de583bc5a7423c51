"""FuseOps: group nodes into fusion groups along the post-dominator tree,
TVM's algorithm (relay/transforms/fuse_ops.cc), and replace each group of two
or more nodes by a ``Fused`` node holding it.

Each node may fuse only into its immediate post-dominator, and only if every
node on every path between them satisfies the rule of the phase:

* phase 0 - an anchor (OUT_ELEMWISE_FUSABLE: Conv, Gemm, MatMul) absorbs the
  elementwise/broadcast ops that follow it (its epilogue); elementwise and
  broadcast ops fuse into following elementwise, broadcast, injective or
  reduction ops;
* phase 1 - injective ops (Reshape, Transpose, Concat...) fuse into
  following injective ones, once the anchors are done.

Because a group is closed over every path between its members, fusing
cannot create a cycle. Unlike TVM, nothing fuses *into* an anchor as its
prologue: the accelerator's macro op is anchor + epilogue, and so is the CPU
lowering. Groups respect manual affinities (nodes on different devices never
fuse) and two caps: members per group and external inputs per group.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ir.graph import Graph, Node, Value, carry_quant
from ir.registry import Pattern, get_op
from passes.infra import PassContext, graph_pass, register_option

register_option("fuse.max_nodes", int, 64, "largest number of nodes in one fusion group")
register_option("fuse.max_inputs", int, 8, "largest number of non-constant external inputs of one fusion group "
                "(the fused CPU kernel's input limit)")


@graph_pass(opt_level=2)
def fuse_ops(graph: Graph, ctx: PassContext) -> Graph:
    """Fuse elementwise epilogues into anchors, elementwise chains together and
    injective ops into their consumers; each group becomes one Fused node."""
    fuser = _Fuser(graph, ctx.option("fuse.max_nodes"), ctx.option("fuse.max_inputs"))
    for phase in (0, 1):
        fuser.run_phase(phase)
    for members in fuser.groups():
        if len(members) > 1:
            make_fused(graph, members)
    graph.sort()
    return graph


# ---------------------------------------------------------------- post-dominator tree

@dataclass
class _Group:
    """A union-find set of nodes."""

    pattern: Pattern
    nodes: int = 1
    parent: "_Group | None" = None
    anchor: bool = False

    def root(self) -> "_Group":
        group = self
        while group.parent is not None:
            group = group.parent
        return group


@dataclass
class _Dom:
    """Post-dominator tree entry: the immediate post-dominator (an index into
    the topological order), its depth, and the combined pattern of the edges
    from the node up to it."""

    parent: int | None
    depth: int = 0
    pattern: Pattern = Pattern.ELEMWISE
    users: list[int] = field(default_factory=list)


class _Fuser:
    def __init__(self, graph: Graph, max_nodes: int, max_inputs: int):
        self.graph = graph
        self.nodes = list(graph.nodes)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.patterns = [get_op(n.op).pattern for n in self.nodes]
        self.groups_of = [_Group(p, anchor=p == Pattern.OUT_ELEMWISE_FUSABLE) for p in self.patterns]
        self.max_nodes, self.max_inputs = max_nodes, max_inputs
        self.dom = self._post_dominators()

    # -------------------------------------------------------- tree
    def _edges(self, i: int) -> list[tuple[int, Pattern]] | None:
        """(consumer index, edge pattern) of node i's uses; None when one of
        its outputs leaves the graph (a graph output can only be a group's
        root). A broadcasting consumer is elementwise on an edge whose input
        already has the output's shape (TVM's IsBroadcastSameShape)."""
        edges = []
        for value in self.nodes[i].outputs:
            if value in self.graph.outputs:
                return None
            for user, _ in value.uses:
                j = self.index[id(user)]
                pattern = self.patterns[j]
                if pattern == Pattern.BROADCAST and user.outputs[0].type.shape == value.type.shape:
                    pattern = Pattern.ELEMWISE
                edges.append((j, pattern))
        return edges

    def _post_dominators(self) -> list[_Dom]:
        dom: list[_Dom | None] = [None] * len(self.nodes)
        for i in reversed(range(len(self.nodes))):
            edges = self._edges(i)
            users = sorted({j for j, _ in edges or []})
            if not edges:
                dom[i] = _Dom(None, 0, Pattern.OPAQUE, users)
                continue
            parent, pattern = edges[0]
            for user, edge in edges[1:]:
                parent, pattern = self._lca(dom, parent, user, max(pattern, edge))
            depth = 0 if parent is None else dom[parent].depth + 1
            dom[i] = _Dom(parent, depth, pattern, users)
        return dom

    def _lca(self, dom, a: int | None, b: int | None, pattern: Pattern) -> tuple[int | None, Pattern]:
        while a != b:
            if a is None or b is None:
                return None, Pattern.OPAQUE
            if dom[a].depth < dom[b].depth:
                pattern, b = max(pattern, dom[b].pattern), dom[b].parent
            elif dom[a].depth > dom[b].depth:
                pattern, a = max(pattern, dom[a].pattern), dom[a].parent
            else:
                pattern = max(pattern, dom[a].pattern, dom[b].pattern)
                a, b = dom[a].parent, dom[b].parent
        return a, pattern

    # -------------------------------------------------------- phases
    def run_phase(self, phase: int) -> None:
        for i in range(len(self.nodes)):
            group = self.groups_of[i].root()
            sink = self.dom[i].parent
            if group.pattern == Pattern.OPAQUE or sink is None or self.groups_of[sink].root() is group:
                continue
            rule = self._rule(group.pattern, self.dom[i].pattern, phase)
            if rule is not None and self._path_ok(i, sink, rule) and self._fits(i, sink):
                self._commit(i, sink)

    @staticmethod
    def _rule(kind: Pattern, path: Pattern, phase: int):
        """The condition every node on the path must meet (None: no fusing)."""
        if kind == Pattern.OUT_ELEMWISE_FUSABLE:
            if phase == 0 and path == Pattern.ELEMWISE:
                return lambda k, sink: k <= Pattern.BROADCAST
            return None
        if kind <= Pattern.BROADCAST:
            if phase == 0 and (path <= Pattern.INJECTIVE or path == Pattern.REDUCTION):
                return lambda k, sink: k <= Pattern.INJECTIVE or (sink and k == Pattern.REDUCTION)
            return None
        if kind == Pattern.INJECTIVE and phase == 1:
            return lambda k, sink: k <= Pattern.INJECTIVE
        return None

    def _between(self, src: int, sink: int) -> list[int]:
        """Every node on a path from ``src`` to ``sink`` (both excluded)."""
        seen, stack, found = set(), list(self.dom[src].users), []
        while stack:
            i = stack.pop()
            if i == sink or i in seen:
                continue
            seen.add(i)
            found.append(i)
            stack += self.dom[i].users or []
        return found

    def _path_ok(self, src: int, sink: int, rule) -> bool:
        nodes = self._between(src, sink)
        if any(not rule(self.groups_of[i].root().pattern, False) for i in nodes):
            return False
        sink_group = self.groups_of[sink].root()
        if not rule(sink_group.pattern, True):
            return False
        if self.groups_of[src].root().anchor and sink_group.anchor:
            return False  # one anchor per group
        affinities = {self.nodes[i].affinity for i in (src, sink, *nodes)}
        return len(affinities) == 1

    def _fits(self, src: int, sink: int) -> bool:
        members = self._members(src, sink)
        return len(members) <= self.max_nodes and len(_external_inputs(
            [self.nodes[i] for i in members])) <= self.max_inputs

    def _members(self, src: int, sink: int) -> set[int]:
        """The nodes the group would hold after fusing src into sink."""
        roots = {id(self.groups_of[i].root()) for i in (src, sink, *self._between(src, sink))}
        return {i for i, g in enumerate(self.groups_of) if id(g.root()) in roots}

    def _commit(self, src: int, sink: int) -> None:
        target = self.groups_of[sink].root()
        for i in (src, *self._between(src, sink)):
            group = self.groups_of[i].root()
            if group is not target:
                group.parent = target
                target.nodes += group.nodes
                target.pattern = max(target.pattern, group.pattern)
                target.anchor = target.anchor or group.anchor

    def groups(self) -> list[list[Node]]:
        """Each group's nodes, in topological order."""
        members: dict[int, list[Node]] = {}
        for i, group in enumerate(self.groups_of):
            members.setdefault(id(group.root()), []).append(self.nodes[i])
        return list(members.values())


# ---------------------------------------------------------------- materialising

def _external_inputs(nodes: list[Node]) -> list[Value]:
    """Non-constant values the nodes read that none of them produces."""
    inside = {id(n) for n in nodes}
    seen, inputs = set(), []
    for node in nodes:
        for value in node.inputs:
            if value is None or value.is_constant or id(value) in seen:
                continue
            if value.producer is None or id(value.producer) not in inside:
                seen.add(id(value))
                inputs.append(value)
    return inputs


def make_fused(graph: Graph, members: list[Node]) -> Node | None:
    """Move ``members`` into the body of a new Fused node in ``graph``; a
    group nothing reads (dead code) is left alone."""
    inside = {id(n) for n in members}
    inputs = _external_inputs(members)
    outputs = [v for n in members for v in n.outputs
               if v in graph.outputs or any(id(user) not in inside for user, _ in v.uses)]
    if not outputs:
        return None
    body = Graph(f"{members[-1].name}_body")
    mapping: dict[int, Value] = {id(v): body.add_input(v.name, v.type) for v in inputs}
    carry_quant(inputs, body.inputs)
    for node in members:
        for value in node.inputs:
            if value is not None and value.is_constant and id(value) not in mapping:
                mapping[id(value)] = body.add_constant(value.const, value.name)
                mapping[id(value)].quant = value.quant  # a given weight grid travels with its weights
        copy = body.add_node(node.op, [None if v is None else mapping[id(v)] for v in node.inputs],
                             dict(node.attrs), name=node.name, output_names=[v.name for v in node.outputs],
                             output_types=[v.type for v in node.outputs])
        copy.affinity, copy.annotations = node.affinity, dict(node.annotations)
        carry_quant(node.outputs, copy.outputs)
        mapping.update({id(old): new for old, new in zip(node.outputs, copy.outputs)})
    body.outputs = [mapping[id(v)] for v in outputs]
    return _replace_members(graph, members, inputs, outputs, body)


def _replace_members(graph: Graph, members: list[Node], inputs: list[Value], outputs: list[Value],
                     body: Graph) -> Node:
    pattern = max(get_op(n.op).pattern for n in members)
    anchor = next((n.op for n in members if get_op(n.op).pattern == Pattern.OUT_ELEMWISE_FUSABLE), "")
    index = graph.nodes.index(members[-1]) + 1
    names = [v.name for v in outputs]
    fused = graph.add_node("Fused", inputs, {"body": body, "pattern": int(pattern), "anchor": anchor},
                           name=f"fused_{members[-1].name}", index=index,
                           output_names=[f"{n}__fused" for n in names], output_types=[v.type for v in outputs])
    fused.affinity = members[-1].affinity
    carry_quant(outputs, fused.outputs)
    for old, new in zip(outputs, fused.outputs):
        graph.replace_all_uses(old, new)
    for node in reversed(members):
        graph.remove_node(node)
    for value, name in zip(fused.outputs, names):
        graph.rename_value(value, name)
    return fused

"""Tessera's graph IR: typed SSA values, nodes in topological order, an op
registry (type rules, fusion pattern kinds), a printer and a verifier."""
from ir.builder import GraphBuilder
from ir.errors import IRError, ShapeError, VerificationError
from ir.graph import Graph, Node, Value, clone, walk
from ir.printer import format_graph, format_node
from ir.registry import REQUIRED, InferContext, OpDef, Pattern, get_op, register_op, registered_ops
from ir.types import QuantParams, TensorType, dtype_name
from ir.verifier import verify

TESSERA_PACKAGE = True
"""Marks this package as Tessera's (runtime/packages.py checks it)."""

__all__ = [
    "Graph", "Node", "Value", "TensorType", "GraphBuilder", "Pattern", "OpDef", "InferContext",
    "REQUIRED", "register_op", "get_op", "registered_ops", "verify", "format_graph", "format_node",
    "dtype_name", "walk", "clone", "QuantParams", "IRError", "ShapeError", "VerificationError",
]

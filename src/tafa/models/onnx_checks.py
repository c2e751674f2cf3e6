"""What an ONNX graph must pass before anything runs or imports it: no external data, standard
operator domains only, no model-local function named like the standard operator it would shadow.

Both readers of an ONNX file use these checks: the loader (:class:`~tafa.models.files.OnnxModel`,
in a sandbox worker) and the white-box import (:mod:`tafa.models.onnx_chain`,
:mod:`tafa.models.onnx_import`), so that neither imports the other's module.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsafeModelFile

#: ONNX operator domains run by onnxruntime's own kernels from the ONNX standard.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

#: Operator domains that runtimes implement with their own kernels (onnxruntime's contrib and
#: internal operators, exporters' escape hatches). A node of such a domain is refused even
#: when the file defines a local function of the same name: that function would be a decoy.
RUNTIME_DOMAINS = ("com.microsoft", "com.ms", "ai.onnx", "org.pytorch", "ai.onnx.contrib", "com.intel",
                   "org.openvinotoolkit", "com.amd", "com.nvidia", "pkg.onnxscript.torch_lib")


def shadows_standard_operator(domain: str, name: str) -> bool:
    """Whether a model-local function ``domain::name`` has the name of a standard ONNX operator
    of its domain (``""`` and ``ai.onnx`` are one domain)."""
    from onnx import defs

    if domain not in ONNX_DOMAINS:
        return False
    try:
        return bool(defs.has(name, "" if domain == "ai.onnx" else domain))
    except Exception:  # noqa: BLE001 - a name onnx cannot look up is no standard operator
        return False


def check_onnx(proto: Any, path: str = "the ONNX model") -> None:
    """Refuse (:class:`UnsafeModelFile`) an ONNX model that refers to external data files,
    uses operators outside :data:`ONNX_DOMAINS` (model-local functions aside), or defines a
    model-local function that shadows a standard operator (:func:`shadows_standard_operator`)."""
    from onnx import AttributeProto, TensorProto

    functions = {(function.domain, function.name): function for function in proto.functions}
    for domain, name in functions:
        if shadows_standard_operator(domain, name):
            raise UnsafeModelFile(f"{path!r} defines a model-local function {name!r} of domain {domain!r}, named like "
                                  "the standard ONNX operator it shadows; refused: runtimes disagree about which one "
                                  "runs (onnxruntime runs the standard operator, ONNX's inliner the function).")
    standard: dict[tuple[str, str], bool] = {}

    def is_standard(key: tuple[str, str], seen: frozenset[tuple[str, str]] = frozenset()) -> bool:
        """Whether a local function's body uses only standard operators (or such functions)."""
        if key not in standard:
            standard[key] = key not in seen and all(
                node.domain in ONNX_DOMAINS or ((node.domain, node.op_type) in functions
                                                and is_standard((node.domain, node.op_type), seen | {key}))
                for node in functions[key].node)
        return standard[key]

    def tensors_of(attribute: Any) -> list[Any]:
        found = []
        if attribute.type == AttributeProto.TENSOR:
            found.append(attribute.t)
        elif attribute.type == AttributeProto.TENSORS:
            found.extend(attribute.tensors)
        elif attribute.type == AttributeProto.SPARSE_TENSOR:
            found.extend([attribute.sparse_tensor.values, attribute.sparse_tensor.indices])
        elif attribute.type == AttributeProto.SPARSE_TENSORS:
            for sparse in attribute.sparse_tensors:
                found.extend([sparse.values, sparse.indices])
        return found

    def check_tensor(tensor: Any) -> None:
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "?")
            raise UnsafeModelFile(f"{path!r} refers to an external data file ({location!r}) for tensor "
                                  f"{tensor.name!r}; tafa opens self-contained ONNX files only.")

    def check_nodes(nodes: Any) -> None:
        for node in nodes:
            key = (node.domain, node.op_type)
            if node.domain in ONNX_DOMAINS:
                pass
            elif node.domain.startswith(RUNTIME_DOMAINS):
                raise UnsafeModelFile(f"{path!r} uses operator {node.op_type!r} of domain {node.domain!r}, which "
                                      "onnxruntime runs with its own kernel whatever local function the file defines; "
                                      "tafa runs standard ONNX operators only.")
            elif not (key in functions and is_standard(key)):
                raise UnsafeModelFile(f"{path!r} uses operator {node.op_type!r} of custom domain "
                                      f"{node.domain!r}; tafa runs standard ONNX operators only.")
            for attribute in node.attribute:
                for tensor in tensors_of(attribute):
                    check_tensor(tensor)
                if attribute.type == AttributeProto.GRAPH:
                    check_graph(attribute.g)
                elif attribute.type == AttributeProto.GRAPHS:
                    for graph in attribute.graphs:
                        check_graph(graph)

    def check_graph(graph: Any) -> None:
        for tensor in graph.initializer:
            check_tensor(tensor)
        for sparse in graph.sparse_initializer:
            check_tensor(sparse.values)
            check_tensor(sparse.indices)
        check_nodes(graph.node)

    check_graph(proto.graph)
    for function in proto.functions:
        check_nodes(function.node)

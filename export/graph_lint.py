"""Static checks and op histograms for exported int8 graphs (TFLite and ONNX QDQ).

This module owns deciding whether an exported file is deployable as a full-int8 model:
:func:`lint_tflite` (no float kernels between int8 input and output, no MIRROR_PAD, one
XNNPACK partition), :func:`lint_onnx_int8` (every Conv/Gemm/MatMul is QDQ-fed), and the op
histograms used in reports. Each problem is one sentence naming the op.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
_QUANT_OPS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}


def _tflite_model(path: Path):
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return model, op_names, type_names


def _opcode_name(model, op_names, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    # builtinCode is authoritative; deprecatedBuiltinCode holds codes < 127 in old files.
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    if op_names.get(value) == "CUSTOM" and code.customCode:
        name = code.customCode
        return f"CUSTOM:{name.decode() if isinstance(name, bytes) else name}"
    return op_names.get(value, f"OP{value}")


def op_histogram_tflite(path: Path) -> dict[str, int]:
    """Count of each builtin op over all subgraphs of a .tflite file."""
    model, op_names, _ = _tflite_model(path)
    counts: Counter[str] = Counter()
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            counts[_opcode_name(model, op_names, op)] += 1
    return dict(counts)


def _xnnpack_partitions(path: Path) -> tuple[int, list[str]] | None:
    """(number of DELEGATE nodes, names of ops left outside them) or None if undeterminable."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
        ops = interp._get_ops_details()
    except Exception as exc:  # private API / runtime may differ; lint must not crash
        log.debug("could not inspect XNNPACK partitions of %s: %s", path, exc)
        return None
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    plain = [o for o in ops if o["op_name"] != "DELEGATE"]
    d_in = {int(t) for o in delegates for t in o["inputs"]}
    d_out = {int(t) for o in delegates for t in o["outputs"]}
    produced = {int(t) for o in plain for t in o["outputs"]}
    internal = produced - d_in - d_out
    # An op sits inside a partition iff everything it reads is a partition input or internal.
    outside = [
        o["op_name"]
        for o in plain
        if not all(int(t) < 0 or int(t) in d_in or int(t) in internal for t in o["inputs"])
    ]
    if not delegates:
        outside = [o["op_name"] for o in plain]
    return len(delegates), outside


def _has_data(buf) -> bool:
    """A buffer holds constant data inline or (large models) at an offset past the flatbuffer."""
    data = getattr(buf, "data", None)
    return (data is not None and len(data) > 0) or getattr(buf, "offset", 0) > 1


def lint_tflite(path: Path) -> list[str]:
    """Problems, each one sentence naming the op; empty list = clean full-int8 graph.

    Flags: a float model input/output; any op that reads or writes a float activation tensor
    (e.g. DEQUANTIZE/QUANTIZE in the middle, float32 CONV_2D); DEQUANTIZE anywhere;
    MIRROR_PAD; more than one XNNPACK delegate partition (when the runtime can tell).
    """
    path = Path(path)
    model, op_names, type_names = _tflite_model(path)
    problems: list[str] = []
    for gi, graph in enumerate(model.subgraphs or []):
        tensors = graph.tensors or []
        constant = {
            i for i, t in enumerate(tensors) if t.buffer and _has_data(model.buffers[t.buffer])
        }

        def ttype(i: int, tensors=tensors) -> str:
            return type_names.get(tensors[i].type, str(tensors[i].type))

        def tname(i: int, tensors=tensors) -> str:
            name = tensors[i].name
            return name.decode() if isinstance(name, bytes) else str(name)

        for kind, idxs in (("input", graph.inputs), ("output", graph.outputs)):
            for i in idxs if idxs is not None else []:
                if ttype(i) != "INT8":
                    problems.append(
                        f"Subgraph {gi} model {kind} '{tname(i)}' is {ttype(i)}, not INT8."
                    )
        for k, op in enumerate(graph.operators or []):
            name = _opcode_name(model, op_names, op)
            if name == "MIRROR_PAD":
                problems.append(
                    f"MIRROR_PAD (op {k}) is present; use zero padding (reflect padding is "
                    "slow or unsupported on int8 accelerators)."
                )
            acts = [int(i) for i in op.inputs if i >= 0 and int(i) not in constant]
            acts += [int(i) for i in op.outputs if i >= 0]
            floats = sorted({ttype(i) for i in acts if ttype(i) in _FLOAT_TYPES})
            if name == "DEQUANTIZE":
                problems.append(
                    f"DEQUANTIZE (op {k}) converts to float in the middle of the int8 graph."
                )
            elif floats:
                problems.append(
                    f"{name} (op {k}) runs a float kernel ({'/'.join(floats)} activations) "
                    "between the int8 input and output."
                )
            elif name.startswith("CUSTOM:"):
                problems.append(f"{name} (op {k}) is a custom op, not a builtin int8 kernel.")
    parts = _xnnpack_partitions(path)
    if parts is not None:
        count, outside = parts
        if count > 1 or (count == 1 and outside):
            left = ", ".join(sorted(set(outside))) or "unknown ops"
            problems.append(
                f"XNNPACK splits the graph into {count} delegate partition(s); "
                f"{left} stay on the reference kernels."
            )
        elif count == 0:
            problems.append("XNNPACK delegated no ops; every op runs on the reference kernels.")
    for p in problems:
        log.info("lint %s: %s", path.name, p)
    return problems


def op_histogram_onnx(path: Path) -> dict[str, int]:
    """Count of each op_type in the main graph of an ONNX file (domain-prefixed if not default)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        dom = node.domain if node.domain not in ("", "ai.onnx") else ""
        counts[f"{dom}.{node.op_type}" if dom else node.op_type] += 1
    return dict(counts)


def lint_onnx_int8(path: Path) -> list[str]:
    """Problems: every Conv/Gemm/MatMul must have DequantizeLinear-fed (QDQ) weights and inputs.

    Also requires the weight's DequantizeLinear to read an initializer (pre-quantized weight).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {t.name for t in graph.initializer}
    problems: list[str] = []
    n_checked = 0
    for node in graph.node:
        if node.op_type not in _QUANT_OPS:
            continue
        n_checked += 1
        label = f"{node.op_type} '{node.name or node.output[0]}'"
        for role, idx in (("input", 0), ("weight", 1)):
            if len(node.input) <= idx or not node.input[idx]:
                problems.append(f"{label} has no {role}.")
                continue
            src = producer.get(node.input[idx])
            if src is None or src.op_type != "DequantizeLinear":
                what = src.op_type if src is not None else "a graph input/initializer"
                problems.append(
                    f"{label} {role} '{node.input[idx]}' comes from {what}, not DequantizeLinear."
                )
            elif role == "weight" and src.input[0] not in inits:
                problems.append(
                    f"{label} weight DequantizeLinear does not read a quantized initializer."
                )
            elif role == "input":
                q = producer.get(src.input[0])
                if q is None or q.op_type != "QuantizeLinear":
                    problems.append(f"{label} input DequantizeLinear is not fed by QuantizeLinear.")
    if n_checked == 0:
        problems.append("No Conv/Gemm/MatMul ops found; nothing is quantized.")
    for p in problems:
        log.info("lint %s: %s", Path(path).name, p)
    return problems

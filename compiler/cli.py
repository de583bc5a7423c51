"""The ``tessera`` command line.

    tessera run [MODEL|FILE.bin]  compile a model to a device binary (or take a binary) and run it on the
                             accelerator simulator: top outputs, hwtime, agreement with the float
                             reference (default: the built-in ResNet-18); --cpu: the float CPU path
    tessera compile MODEL -o FILE.bin   compile a model to a device binary; ends with the
                             accelerator's share (MACs, ONNX nodes, segments, CPU reasons)
    tessera disasm FILE.bin  print the instructions with their layers and ONNX nodes
    tessera info FILE.bin    sections, segments, layers and estimated cycles per layer,
                             each CPU node's reason
    tessera report FILE.bin  write the compile report: one HTML page (layers, placement and
                             reasons, cycles, the cluster schedule, int8 error, metadata)
    tessera show MODEL       print the IR: as imported, optimised (-O) or partitioned
                             into device segments (--partition, with each CPU node's
                             reason); --dot writes Graphviz
    tessera quantize [MODEL] calibrate and quantize a model's accelerator layers, print
                             the layer-wise comparison with float; export/import encodings
    tessera ops              list the ONNX ops Tessera imports

MODEL is an .onnx path, a built-in name (resnet18, resnet10, mobilenet_v2,
transformer), zoo:<name> for onnx's model-zoo topologies with seeded weights,
or family:<name> for the family models written as their exporters write them
(ppocr_det, ppLCNet, yolov8, shufflenet_v2, mobilenet_v3, centernet,
mtcnn_pnet, mtcnn_rnet, keras_audio).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

from compiler.cli_args import check_elements, given_shapes, input_files, pair_arg, parse_shapes, print_top
from compiler.cli_device import (
    add_commands,
    cmd_run_compiled,
    compile_options,
    hwlinear_option,
    placement_options,
    quant_config,
    run_twice,
    target_options,
)
from runtime.command import add_debug_flag, run_command
from runtime.errors import TesseraError
from runtime.files import MAX_MODEL_BYTES, FileError, check_regular, check_writable, write_atomic

DEFAULT_MODEL = "resnet18"
OUTPUTS = {"output": "-o", "dot": "--dot", "report": "--report", "export_encodings": "--export-encodings",
           "trace": "--trace"}
"""The options naming a file a command writes (attribute -> flag), checked writable before any work."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (a user error is one line: runtime/command.py)."""
    args = _parser().parse_args(argv)
    from compiler import precompile

    with precompile.start("run"):  # on a cold kernel cache, a second core compiles too
        return run_command("tessera", lambda: _dispatch(args), args.debug)


def _dispatch(args) -> int:
    """The command, once the files it will write are known to be writable
    and an --image size is known to fit (before minutes of work)."""
    for option, flag in OUTPUTS.items():
        if getattr(args, option, None):
            try:
                check_writable(getattr(args, option))
            except FileError as exc:
                raise TesseraError(f"{flag} {exc}") from None
    if getattr(args, "image", None):
        _check_image(args.image)
    return args.func(args)


def _check_image(spec: str) -> None:
    """Refuse an --image size of more than MAX_ELEMENTS elements per input."""
    from compiler.frontend.shapes import parse_image_spec

    for shape in parse_image_spec(spec):
        check_elements("--image", spec, shape)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="compile a model (or take a binary) and run it on the simulator")
    _model_args(run, default=DEFAULT_MODEL)
    run.add_argument("--cpu", action="store_true", help="run the float model on the CPU path instead "
                     "(compared with onnxruntime)")
    run.add_argument("-o", "--output", metavar="FILE.bin", help="where to write the binary (default: a temporary "
                     "folder)")
    compile_options(run)
    run.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                     help="input data from a .npy file (default: seeded random data)")
    run.add_argument("--top", type=int, default=5, help="how many top outputs to print")
    run.add_argument("--seed", type=int, default=0, help="seed of the random input data")
    run.add_argument("--no-compare", action="store_true", help="skip the onnxruntime comparison")
    run.add_argument("--no-optimize", action="store_true", help="run the graph as imported, unoptimised")
    run.add_argument("--trace", metavar="FILE.json", help="write the simulator run's trace in Chrome's trace-event "
                     "format: the device's modelled timeline and the host's segments (docs/trace.md)")
    run.set_defaults(func=cmd_run)
    add_commands(sub, _model_args, _calibration_source, _load)
    show = sub.add_parser("show", help="print the IR (as imported, optimised or partitioned)")
    _model_args(show)
    show.add_argument("-O", "--optimize", action="store_true", help="simplify and fuse first")
    show.add_argument("--partition", action="store_true",
                      help="also assign affinities and partition into device segments")
    show.add_argument("--fallback", default="HETERO:FPGA,CPU", metavar="HETERO:DEV,...",
                      help="device priority for affinity (default: %(default)s)")
    hwlinear_option(show)
    show.add_argument("--dot", metavar="FILE", help="also write the graph as Graphviz DOT, coloured by affinity")
    show.add_argument("--timing", action="store_true", help="print the time each pass took")
    placement_options(show)
    show.set_defaults(func=cmd_show)
    _quantize_parser(sub)
    ops = sub.add_parser("ops", help="list the ONNX ops Tessera imports")
    ops.set_defaults(func=cmd_ops)
    add_debug_flag(parser)
    for command in sub.choices.values():
        add_debug_flag(command, top=False)
    return parser


def _model_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("model", nargs="?" if default else None, default=default,
                        help="an .onnx file, a built-in model name, or zoo:<name>")
    parser.add_argument("--image", metavar="WxHxC", help="input size as FWDNXT's image string")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=D1xD2x...",
                        help="the shape of an input with symbolic dims")


def cmd_run(args) -> int:
    if args.trace and args.cpu:
        raise TesseraError("--trace writes the simulator run's trace; it does not apply with --cpu")
    if not args.cpu:
        if args.calibration is None and args.model == DEFAULT_MODEL:
            if _have_photos():
                args.calibration = "photos"
            else:
                print("note: calibrating on synthetic data; for scikit-learn's sample photographs: "
                      "pip install 'tessera[images]'")
        return cmd_run_compiled(args, _calibration_source, _load, _compiled_feeds)
    from codegen.cpu import lower_to_program
    from compiler.pipeline import optimize
    from runtime.executor import Executor

    model = _load(args.model)
    graph = _import(model, args)
    if not args.no_optimize:
        graph = optimize(graph)
    executor = Executor(lower_to_program(graph).frozen())
    feeds = _feeds(graph, args)
    outputs, first, warm = run_twice(executor.run, feeds)
    print(f"model {args.model}: {len(graph.nodes)} nodes{'' if args.no_optimize else ' after optimisation'}, inputs "
          + ", ".join(f"{v.name} {v.type}" for v in graph.inputs))
    print(f"ran on the CPU path in {warm * 1e3:.1f} ms (first run {first * 1e3:.1f} ms, JIT included)")
    for name, value in outputs.items():
        print_top(name, value, args.top)
    if not args.no_compare:
        _compare(model, feeds, outputs)
    return 0


def cmd_show(args) -> int:
    from compiler.coverage import coverage
    from compiler.pipeline import optimize, partition_graph
    from ir.dot import to_dot
    from ir.printer import format_graph
    from passes.instruments import PassTiming

    graph = _import(_load(args.model), args)
    timing = PassTiming()
    options = {"partition.fallback": args.fallback, "target.hwlinear": args.hwlinear}
    if args.partition:
        graph = partition_graph(graph, options=options, instruments=[timing])
    elif args.optimize:
        graph = optimize(graph, instruments=[timing])
    print(format_graph(graph))
    if args.partition:
        report = coverage(graph)
        print(report.table())
        print(report.summary_line())
    if args.partition and args.split:
        _print_split(args)
    if args.timing:
        print(timing.render())
    if args.dot:
        write_atomic(args.dot, to_dot(graph))
        print(f"wrote {args.dot}")
    return 0


def _quantize_parser(sub) -> None:
    q = sub.add_parser("quantize", help="calibrate and quantize; print the layer-wise comparison with float")
    _model_args(q, default=DEFAULT_MODEL)
    q.add_argument("--calibration", metavar="PATH|photos",
                   help="calibration inputs: a folder of .npy files or of images, or 'photos' for crops of "
                        "scikit-learn's sample photographs (default: synthetic data, with a warning)")
    q.add_argument("--count", type=int, default=32, help="calibration inputs to use (default: %(default)s)")
    q.add_argument("--calibrator", default="mse",
                   help="minmax, percentile, percentile:P, entropy or mse (default: %(default)s)")
    q.add_argument("--mode", default="int8", choices=["int8", "int16", "radix8", "radix16"],
                   help="the model's precision (default: %(default)s)")
    q.add_argument("--float-layer", action="append", default=[], metavar="NODE",
                   help="keep this ONNX node in float on the CPU (repeatable)")
    q.add_argument("--precision", action="append", default=[], metavar="NODE=PRECISION",
                   help="per-layer precision, e.g. conv_3=int16 (repeatable)")
    q.add_argument("--encodings", metavar="FILE", help="take the parameters from an AIMET encodings file")
    q.add_argument("--export-encodings", metavar="FILE", help="write the parameters as AIMET encodings")
    q.add_argument("--encodings-version", default="0.6.1", choices=["0.6.1", "1.0.0"])
    q.add_argument("--sensitivity", type=int, default=0, metavar="K",
                   help="re-quantize the K layers that add the most error in 16 bits")
    target_options(q)
    q.add_argument("--samples", type=int, default=4,
                   help="evaluation inputs for the comparison (default: %(default)s; other seeds than calibration)")
    hwlinear_option(q)
    q.add_argument("--no-layers", action="store_true", help="print only the summary, not the per-layer table")
    q.add_argument("--task", default="auto", choices=["auto", "yolo", "db", "centernet", "classify", "none"],
                   help="how the outputs are read for the agreement of detections or classes with float "
                        "(compiler/agreement.py): auto recognises YOLO, DB, CenterNet and classifier heads "
                        "(default: %(default)s)")
    q.add_argument("--report", nargs="?", const="", metavar="FILE.csv|FILE.json",
                   help="diagnose: each layer's share of the output error and why (saturation, channel spread, "
                        "weight floor, mixed inputs, lookup tables), sorted by share; written to FILE as well")
    q.set_defaults(func=cmd_quantize)


def cmd_quantize(args) -> int:
    from compiler.quantize import quantize_model
    from passes.quant.calibration_data import calibration_batches

    model = _load(args.model)
    precision = dict(pair_arg(spec, "--precision") for spec in args.precision)
    start = time.perf_counter()
    graph_inputs = _import(model, args).inputs
    specs = {v.name: (v.type.shape, v.type.dtype) for v in graph_inputs}
    calibration = _calibration_source(args.calibration, specs, args.count, seed=1)
    config = quant_config(args, layer_precision=precision, float_layers=args.float_layer, encodings=args.encodings,
                          sensitivity=args.sensitivity)
    q = quantize_model(model, config=config, calibration_data=calibration, shapes=parse_shapes(args.shape),
                       image=args.image)
    seconds = time.perf_counter() - start
    samples = list(calibration_batches(_calibration_source(args.calibration, specs, args.samples, seed=2), specs,
                                       count=args.samples, seed=2))
    task = None if args.task == "auto" else args.task
    report = q.compare(samples, task)
    layers = q.quantized_nodes()
    print(f"model {args.model}: {len(layers)} integer nodes on the accelerator, {len(q.float_layers())} float "
          f"nodes on the CPU; quantized in {seconds:.1f} s")
    if q.equalized is not None:
        print(f"cross-layer equalization rescaled {q.equalized} layer pair(s)")
    if q.absorbed is not None:
        print(f"bias absorption changed {q.absorbed} layer pair(s)")
    if q.head_grids:
        print(q.head_grids.summary())
    if q.target is not None:
        print(q.target.summary())
    elif q.promoted:
        print("sensitivity analysis moved to 16 bits: " + ", ".join(q.promoted))
    if not args.no_layers:
        print(report.table())
    for name, stats in report.outputs.items():
        print(f"output {name}: SNR {stats.snr_db:.2f} dB against float over {report.samples} inputs, "
              f"cosine {stats.cosine:.6f}, max|err| {stats.max_abs:.4g}")
    for agreement in report.agreement.values():
        print(agreement.line())
    if args.report is not None:
        diagnosis = q.diagnose(samples, task)
        print(diagnosis.table())
        if args.report:
            diagnosis.write(args.report)
            print(f"wrote {args.report}")
    if args.export_encodings:
        q.export_encodings(args.export_encodings, version=args.encodings_version)
        print(f"wrote {args.export_encodings}")
    return 0


def _calibration_source(source: str | None, specs: dict, count: int, seed: int):
    """'photos' -> crops of scikit-learn's photographs sized to the model's
    single NCHW input; anything else is passed through (path or None)."""
    if source != "photos":
        return source
    from compiler.zoo.images import image_crops

    shapes = [shape for shape, _ in specs.values()]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][1] != 3 or shapes[0][2] != shapes[0][3]:
        raise TesseraError(f"--calibration photos needs one square NCHW RGB input, the model has {shapes}")
    try:
        return image_crops(count, size=shapes[0][2], seed=seed)
    except ImportError as exc:
        raise TesseraError(str(exc)) from None


def cmd_ops(args) -> int:
    import onnx.defs

    from compiler.frontend.context import handled_ops
    from compiler.frontend.functions import has_function_body
    from ir.registry import registered_ops

    onnx_ops = {s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx")}
    direct = (set(registered_ops()) | handled_ops() | {"Constant"}) & onnx_ops
    expanded = sorted(op for op in onnx_ops - direct if has_function_body(op, frozenset(direct)))
    print(f"{len(direct)} ops imported directly: " + ", ".join(sorted(direct)))
    print(f"{len(expanded)} more through their ONNX function bodies, where the ops a body uses are supported: "
          + ", ".join(expanded))
    return 0


def _print_split(args) -> None:
    """Split mode's decisions for ``args``' cards and clusters: the model
    quantized on two random inputs (the split depends on shapes, not
    values) and compiled in memory; the table ``tessera info`` prints too."""
    import warnings

    from compiler.cli_device import placement_kwargs, split_table
    from compiler.compile import compile_model

    model = _load(args.model)
    graph = _import(model, args)
    rng = np.random.default_rng(0)
    samples = [{v.name: rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in graph.inputs}
               for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = compile_model(model, image=args.image, shapes=given_shapes(model, args), samples=samples,
                                 hwlinear=args.hwlinear, strip_reference=True, **placement_kwargs(args))
    print(split_table(compiled.metadata.get("split", [])))


def _load(name: str):
    from compiler.zoo import BUILTIN, builtin_model

    if name in BUILTIN or name.startswith(("zoo:", "family:")):
        try:
            return builtin_model(name)
        except ValueError as exc:
            raise TesseraError(str(exc)) from None
    check_regular(name, MAX_MODEL_BYTES, "model file")  # a FIFO or a folder: an error now, not a hang later
    return name


def _import(model, args):
    from compiler.frontend import import_onnx

    return import_onnx(model, shapes=given_shapes(model, args), image=args.image)


def _feeds(graph, args) -> dict[str, np.ndarray]:
    files = input_files(args, [v.name for v in graph.inputs])
    rng = np.random.default_rng(args.seed)
    feeds = {}
    for value in graph.inputs:
        if value.name in files:
            feeds[value.name] = files[value.name].astype(value.type.dtype, copy=False)
        elif value.type.dtype.kind == "f":
            feeds[value.name] = rng.standard_normal(value.type.shape).astype(value.type.dtype)
        else:
            feeds[value.name] = rng.integers(0, 2, value.type.shape).astype(value.type.dtype)
    return feeds


def _compiled_feeds(model, args) -> dict[str, np.ndarray]:
    """Inputs of a compiled model: --input files, else a crop of the sample
    photographs for one NCHW RGB input, else seeded random data."""
    files = input_files(args, [t.name for t in model.inputs])
    feeds = {}
    rng = np.random.default_rng(args.seed)
    for spec in model.inputs:
        shape = spec.shape
        if spec.name in files:
            feeds[spec.name] = files[spec.name].astype(spec.dtype, copy=False)
        elif (len(model.inputs) == 1 and len(shape) == 4 and shape[:2] == (1, 3) and shape[2] == shape[3]
              and _have_photos()):
            feeds[spec.name] = _calibration_source("photos", {spec.name: (shape, spec.dtype)}, 1,
                                                   seed=args.seed + 2)[0].reshape(shape)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def _have_photos() -> bool:
    """Whether scikit-learn's sample photographs can be read (the images extra)."""
    from compiler.zoo.images import sample_photo_files

    try:
        return bool(sample_photo_files())
    except ImportError:
        return False


def _compare(model, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed: no comparison")
        return
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    reference = session.run(None, feeds)
    for (name, ours), theirs in zip(outputs.items(), reference):
        scale = max(float(np.abs(theirs).max()), 1e-30)
        rel = float(np.abs(ours - theirs).max()) / scale
        same_top = int(np.argmax(ours)) == int(np.argmax(theirs))
        print(f"onnxruntime agreement on {name}: max|diff| / max|ref| = {rel:.2e}, "
              f"top-1 {'matches' if same_top else 'DIFFERS'}")


if __name__ == "__main__":
    sys.exit(main())

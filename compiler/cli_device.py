"""The ``tessera`` commands for device binaries: compile, run a binary on the
simulator, disassemble, and describe.

    tessera compile model.onnx --image 224x224x3 -o model.bin [--calibration photos]
    tessera run model.bin --input x.npy          outputs, hwtime, agreement with Run_th
    tessera disasm model.bin                     instructions with their layers and ONNX nodes
    tessera info model.bin                       sections, segments, layers, estimated cycles, and
                                                 why each CPU node is not on the accelerator
    tessera report model.bin [-o model.html]     the compile report: one HTML page for a browser
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

from runtime.errors import TesseraError
from runtime.snr import snr_db


def add_commands(sub, model_args, calibration_source, load_model) -> None:
    """Register compile, disasm and info (run is shared with the CPU path)."""
    compile_ = sub.add_parser("compile", help="compile a model to a device binary")
    model_args(compile_)
    compile_.add_argument("-o", "--output", required=True, metavar="FILE.bin", help="the binary to write")
    compile_options(compile_)
    compile_.set_defaults(func=lambda args: cmd_compile(args, calibration_source, load_model))
    disasm = sub.add_parser("disasm", help="print a binary's instructions with their provenance")
    disasm.add_argument("binary", help="a compiled .bin file")
    disasm.add_argument("--limit", type=int, default=0, help="print at most this many instructions per stream")
    disasm.set_defaults(func=cmd_disasm)
    info = sub.add_parser("info", help="describe a binary: sections, segments, layers, estimated cycles")
    info.add_argument("binary", help="a compiled .bin file")
    info.set_defaults(func=cmd_info)
    report = sub.add_parser("report", help="write a binary's compile report: one HTML page to open in a browser")
    report.add_argument("binary", help="a compiled .bin file")
    report.add_argument("-o", "--output", metavar="FILE.html", help="where to write it (default: beside the "
                        "binary, NAME.html)")
    report.add_argument("--diagnosis", metavar="FILE.json", help="a diagnosis from tessera quantize --report "
                        "FILE.json: each layer's share of the output error")
    report.set_defaults(func=cmd_report)


def compile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", metavar="PATH|photos",
                        help="calibration inputs: a folder of .npy files or images, or 'photos' for crops of "
                             "scikit-learn's sample photographs (default: synthetic data, with a warning)")
    parser.add_argument("--count", type=int, default=32, help="calibration inputs (default: %(default)s)")
    parser.add_argument("--mean", metavar="R,G,B", help="a folder of images: per-channel mean on the [0, 1] "
                        "pixel scale, subtracted before --std divides (recorded in the binary for tessera-infer)")
    parser.add_argument("--std", metavar="R,G,B", help="a folder of images: per-channel standard deviation")
    parser.add_argument("--layout", choices=["NCHW", "NHWC"],
                        help="a folder of images: the input's layout (default: from its shape)")
    parser.add_argument("--calibrator", default="mse", help="minmax, percentile[:P], entropy or mse")
    parser.add_argument("--mode", default="int8", choices=["int8", "int16", "radix8", "radix16"])
    target_options(parser)
    hwlinear_option(parser)
    placement_options(parser)
    parser.add_argument("--nlayers", type=int, default=-1, help="compile only the first N layers (-1: all)")
    parser.add_argument("--hardware", default="fwdnxt", metavar="PRESET|FILE.json",
                        help="the accelerator to compile for: fwdnxt (default), tiny, large, or a JSON config")
    parser.add_argument("--strip-reference", action="store_true",
                        help="leave the float reference program (Run_th) out of the binary")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the seconds each compile stage took (import, passes, calibration, codegen, ...)")


def target_options(parser: argparse.ArgumentParser) -> None:
    """--equalize, --absorb-bias, --no-head-grids, --no-channel-grids, --no-weight-rounding, --target-snr
    and its budget (passes/quant/equalize.py, passes/quant/head_grids.py, passes/quant/channel_grids.py,
    passes/quant/weight_rounding.py, compiler/target_snr.py)."""
    parser.add_argument("--equalize", action="store_true",
                        help="cross-layer equalization before calibration (convolution pairs through ReLU-like "
                             "activations: one activation grid fits the channels better)")
    parser.add_argument("--absorb-bias", action="store_true",
                        help="move a channel's always-positive floor into the next layer's bias (such pairs only)")
    parser.add_argument("--no-head-grids", dest="head_grids", action="store_false",
                        help="keep one grid for a model output whose channels carry different quantities (default: "
                             "a grid per group of channels, joined on the host)")
    parser.add_argument("--no-channel-grids", dest="channel_grids", action="store_false",
                        help="one grid for every tensor (default: a grid per channel for a tensor a convolution "
                             "writes and only depthwise convolutions read, free on the device)")
    parser.add_argument("--no-weight-rounding", dest="weight_rounding", action="store_false",
                        help="round each weight to its nearest code (default: a convolution's weights rounded by the "
                             "error they leave in its output on the calibration inputs)")
    parser.add_argument("--target-snr", type=float, metavar="DB",
                        help="move layers to 16 bits, largest share of the output error first, until every output's "
                             "SNR on the calibration inputs reaches DB")
    parser.add_argument("--target-budget", type=float, default=0.15, metavar="FRACTION",
                        help="at most this share of the accelerator's MACs in 16 bits (default: %(default)s)")


def quant_config(args, **fields):
    """The compiler.quant_config.QuantConfig of a command's quantization
    options (calibration count, calibrator, mode, hwlinear and the fidelity
    options); ``fields``: the command's other QuantConfig fields."""
    from compiler.quant_config import QuantConfig

    return QuantConfig(calibration_count=args.count, calibrator=args.calibrator, mode=args.mode,
                       hwlinear=args.hwlinear, **target_kwargs(args), **fields)


def target_kwargs(args) -> dict:
    """QuantConfig's fields for the fidelity options (none when not asked)."""
    kwargs = {"equalize": True} if getattr(args, "equalize", False) else {}
    if getattr(args, "absorb_bias", False):
        kwargs["absorb_bias"] = True
    for switch in ("head_grids", "channel_grids", "weight_rounding"):
        if not getattr(args, switch, True):
            kwargs[switch] = False
    if getattr(args, "target_snr", None) is not None:
        kwargs.update(target_snr=args.target_snr, target_budget=args.target_budget)
    return kwargs


def hwlinear_option(parser: argparse.ArgumentParser) -> None:
    """--hwlinear / --no-hwlinear: linear layers (Gemm/MatMul with constant weights) on the accelerator or
    the CPU (FWDNXT's hwlinear); neither: where the affinity policy finds they pay (target.hwlinear unset)."""
    parser.add_argument("--hwlinear", action=argparse.BooleanOptionalAction, default=None,
                        help="linear layers (Gemm/MatMul) on the accelerator (--hwlinear) or the CPU (--no-hwlinear); "
                             "default: on the accelerator where the placement costs say it pays")


def placement_options(parser: argparse.ArgumentParser) -> None:
    """FWDNXT's cards and clusters: batch mode (default) or split mode."""
    parser.add_argument("--numcard", type=int, default=1, help="cards to use (default: %(default)s)")
    parser.add_argument("--numclus", type=int, default=1, help="clusters per card to use (default: %(default)s)")
    parser.add_argument("--split", action="store_true",
                        help="split mode (FWDNXT clustersbatchmode): one image, each layer divided over the "
                             "clusters (default: batch mode, each cluster its own images)")
    parser.add_argument("--imgs-per-cluster", type=int, default=1, help="batch mode: images per cluster per run")
    parser.add_argument("--mvbatch", action="store_true",
                        help="batch mode, --imgs-per-cluster a multiple of 4: a cluster's images go through each "
                             "layer 4 at a time, each weight tile loaded once for the 4 (FWDNXT mvbatch)")
    parser.add_argument("--split-override", action="append", default=[], metavar="LAYER=AXIS",
                        help="split mode: divide LAYER along AXIS (k, rows, cols, none, cards:<axis>; tiles or "
                             "none for a map layer) instead of the distribute pass's choice")


def placement_kwargs(args) -> dict:
    """compile_model's keywords for the placement options."""
    from compiler.cli_args import pair_arg

    overrides = dict(pair_arg(spec, "--split-override") for spec in args.split_override)
    return {"numcard": args.numcard, "numclus": args.numclus, "split": args.split,
            "imgs_per_cluster": args.imgs_per_cluster, "mvbatch": args.mvbatch, "split_overrides": overrides}


def is_binary(path: str) -> bool:
    """Whether ``path`` is a regular file starting with the binary format's
    magic (a FIFO is not waited on: not a binary)."""
    from runtime.binary import MAGIC
    from runtime.files import open_regular

    try:
        with open_regular(path, None, "binary") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except (TesseraError, OSError):
        return False


def compile_to(args, output: str, calibration_source, load_model, instruments=()):
    """Compile ``args.model`` to ``output``; the CompiledModel and seconds.
    ``instruments`` go to compile_model (a PassTiming for --verbose)."""
    from compiler.cli_args import given_shapes
    from compiler.compile import compile_model
    from runtime.hardware import hardware_config

    model = load_model(args.model)
    shapes = given_shapes(model, args)
    specs = {}
    if args.calibration is not None or any(v is not None for v in (args.mean, args.std, args.layout)):
        from compiler.frontend import import_onnx  # the input shapes, to read calibration inputs

        graph = import_onnx(model, shapes=shapes, image=args.image)
        specs = {v.name: (v.type.shape, v.type.dtype) for v in graph.inputs}
    calibration = calibration_source(args.calibration, specs, args.count, seed=1)
    samples, preprocess = _samples(calibration, specs, args.count, _preprocess(args, specs))
    start = time.perf_counter()
    compiled = compile_model(model, image=args.image, shapes=shapes, samples=samples, outfile=output,
                             nlayers=args.nlayers, **placement_kwargs(args),
                             strip_reference=args.strip_reference, config=hardware_config(args.hardware),
                             preprocess=preprocess, quant_config=quant_config(args), instruments=instruments)
    return compiled, time.perf_counter() - start


def _preprocess(args, specs: dict):
    """The PreprocessSpec of --mean/--std/--layout (None when none is given;
    the layout defaults to NCHW when the axis after the batch has 1 or 3
    values, else NHWC when the last has)."""
    if args.mean is None and args.std is None and args.layout is None:
        return None
    from passes.quant.calibration_data import PreprocessSpec

    layout = args.layout
    if layout is None:
        shape = next(iter(specs.values()))[0] if len(specs) == 1 else ()
        layout = "NHWC" if len(shape) == 4 and shape[1] not in (1, 3) and shape[3] in (1, 3) else "NCHW"
    return PreprocessSpec(layout, "RGB", 1 / 255, _floats(args.mean, "--mean", 0.0), _floats(args.std, "--std", 1.0))


def _floats(text: str | None, flag: str, default: float) -> tuple[float, ...]:
    if text is None:
        return (default,)
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise TesseraError(f"{flag} {text!r}: give numbers separated by commas (R,G,B)") from None


def _samples(calibration, specs, count, preprocess):
    """The calibration samples and the pre-processing their images were
    read with (None when they are not images)."""
    if calibration is None:
        if preprocess is not None:
            raise TesseraError("--mean, --std and --layout apply to a --calibration folder of images")
        return None, None
    from passes.quant.calibration_data import calibration_batches

    batches = calibration_batches(calibration, specs, count=count, seed=1, preprocess=preprocess)
    return list(batches), getattr(batches, "preprocess", None)


def cmd_compile(args, calibration_source, load_model) -> int:
    from compiler.coverage import recorded_coverage

    timing = _timing(args)
    compiled, seconds = compile_to(args, args.output, calibration_source, load_model, timing)
    _summary(compiled, args.output, args.output, seconds, timing)
    print(recorded_coverage(compiled.metadata).summary_line())
    if "target_snr" in compiled.metadata:
        from compiler.target_snr import TargetReport

        print(TargetReport.from_metadata(compiled.metadata["target_snr"]).summary())
    if "head_grids" in compiled.metadata:
        from passes.quant.head_grids import HeadGrids

        print(HeadGrids(**compiled.metadata["head_grids"]).summary())
    return 0


def _timing(args) -> list:
    """The instruments of --verbose: a PassTiming (none without it)."""
    if not args.verbose:
        return []
    from passes.instruments import PassTiming

    return [PassTiming()]


def _summary(compiled, shown: str, path: str, seconds: float, timing: list) -> None:
    devices = compiled.device_segments
    layers = compiled.layers
    print(f"compiled in {seconds:.1f} s to {shown} ({os.path.getsize(path)} bytes): {len(devices)} accelerator "
          f"segment(s) with {len(layers)} layers, {len(compiled.segments) - len(devices)} CPU segment(s), "
          f"DRAM {compiled.dram_size} bytes")
    if timing:
        from compiler.compile import stage_line

        print(stage_line(timing[0]))


def cmd_run_compiled(args, calibration_source, load_model, feeds_for) -> int:
    """`tessera run`: compile the model (unless it is a binary already), run it
    on the simulator, print the top outputs, hwtime and the agreement with the
    float reference program."""
    from runtime.binary import read_binary
    from runtime.engine import Engine
    from runtime.trace import HostRecorder

    path = args.model
    if not is_binary(path):
        with tempfile.TemporaryDirectory(prefix="tessera-") as folder:  # removed at once without -o
            output = args.output or os.path.join(folder, "model.bin")
            timing = _timing(args)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                compiled, seconds = compile_to(args, output, calibration_source, load_model, timing)
            for message in dict.fromkeys(str(w.message) for w in caught):
                print(f"warning: {message}")
            _summary(compiled, output if args.output else "a temporary binary (-o PATH keeps it)", output, seconds,
                     timing)
            model = read_binary(output)
        path = args.output or "the binary"
    else:
        model = read_binary(path)
    engine = Engine(model)
    feeds = feeds_for(engine.model, args)
    recorder = HostRecorder() if args.trace else None
    record = iter((None, recorder))  # --trace: the warm run's host spans, not the first's (it compiles kernels)
    outputs, first, warm = run_twice(lambda f: engine.run(f, recorder=next(record)), feeds)
    print(f"ran {path} on the simulator in {warm * 1e3:.1f} ms (first run {first * 1e3:.1f} ms, JIT included); "
          f"hwtime {engine.device.hwtime_ms:.3f} ms on the accelerator ({engine.device.instructions} instructions, "
          f"{100 * engine.device.efficiency:.0f}% of the MAC peak)")
    from compiler.cli_args import print_top

    for name, value in outputs.items():
        print_top(name, value, args.top)
    if engine.model.reference is not None:
        reference = engine.run_reference(feeds)
        for name, ours in outputs.items():
            _agreement(name, ours, reference[name])
    if recorder is not None:
        engine.write_trace(args.trace, recorder, metadata={"command": "tessera run"})
        print(f"wrote the trace of the warm run to {args.trace} (docs/trace.md: open it in ui.perfetto.dev)")
    return 0


def run_twice(run, feeds):
    """Outputs, and the seconds of a first (JIT included) and a warm run."""
    start = time.perf_counter()
    run(feeds)
    first = time.perf_counter() - start
    start = time.perf_counter()
    outputs = run(feeds)
    return outputs, first, time.perf_counter() - start


def _agreement(name: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    snr = snr_db(theirs, ours)
    same = int(np.argmax(ours)) == int(np.argmax(theirs))
    print(f"agreement with the float reference (Run_th) on {name}: SNR {snr:.1f} dB, top-1 "
          f"{'matches' if same else 'DIFFERS'}")


def cmd_disasm(args) -> int:
    from runtime.binary import read_binary
    from runtime.isa import disassemble

    model = read_binary(args.binary)
    for segment in model.device_segments:
        for key, stream in segment.streams.items():
            provenance = [(layer.start, layer.stop, f"{layer.name} <- {', '.join(layer.onnx_nodes)}")
                          for layer in segment.layers if layer.stream == key]
            print(f"# segment {segment.name}, stream card {key.card} cluster {key.cluster} phase {key.phase}: "
                  f"{len(stream) // 64} instructions")
            data = stream[:64 * args.limit] if args.limit > 0 else stream
            print(disassemble(data, provenance))
    return 0


def cmd_info(args) -> int:
    from runtime.binary import describe, read_binary
    from runtime.compiled import DeviceSegment
    from runtime.engine import Engine

    description = describe(args.binary)
    model = read_binary(args.binary)
    print(f"{args.binary}: format {description.get('version')}, {os.path.getsize(args.binary)} bytes")
    for section in description["sections"]:
        print(f"  section {section['name']:<10} offset {section['offset']:>10} length {section['length']:>10} "
              f"crc {'ok' if section['crc_ok'] else 'BAD'}")
    config = model.config
    print(f"hardware: {config.cards} card(s) x {config.clusters_per_card} clusters x {config.units_per_cluster} "
          f"units x {config.macs_per_unit} MACs at {config.clock_hz / 1e6:.0f} MHz; buffers WGT "
          f"{config.weight_buffer_bytes} ACT {config.activation_buffer_bytes} ACC {config.accumulator_buffer_bytes} "
          f"bytes; DRAM used {model.dram_size} bytes (weights {len(model.dram_image)})")
    print("inputs: " + ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in model.inputs)
          + "; outputs: " + ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in model.outputs))
    device = Engine(model).device
    times = iter(device.layer_times())
    clock = config.clock_hz
    for segment in model.segments:
        if isinstance(segment, DeviceSegment):
            print(f"segment {segment.name}: accelerator, {sum(len(s) // 64 for s in segment.streams.values())} "
                  "instructions")
            several = len(segment.streams) > 1
            print(f"  {'layer':<28}{'op':<10}{'stream' if several else '':>8}{'instructions':>13}{'MACs':>14}"
                  f"{'cycles':>12}{'us':>9}{'MAC use':>9}  onnx nodes")
            peak = config.units_per_cluster * config.macs_per_unit  # one cluster runs the stream
            for layer in segment.layers:
                t = next(times)
                use = f"{100 * layer.macs / (t.cycles * peak):.0f}%" if layer.macs and t.cycles else "-"
                where = f"{layer.stream.card}.{layer.stream.cluster}" if several else ""
                print(f"  {layer.name:<28}{layer.op:<10}{where:>8}{layer.stop - layer.start:>13}{layer.macs:>14}"
                      f"{t.cycles:>12}{t.cycles / clock * 1e6:>9.1f}{use:>9}  {', '.join(layer.onnx_nodes)}")
        else:
            ops = sorted({step.kernel for step in segment.program.steps})
            print(f"segment {segment.name}: CPU, {len(segment.program.steps)} kernel steps ({', '.join(ops)})")
    print(f"estimated accelerator time (hwtime): {device.hwtime_ms:.3f} ms, {100 * device.efficiency:.0f}% of the "
          "MAC peak of the clusters used (docs/simulator.md explains the cycle model)")
    placement = model.metadata.get("placement", {})
    if placement:
        print(f"placement: {placement.get('mode', 'batch')} mode, {placement.get('numcard', 1)} card(s) x "
              f"{placement.get('numclus', 1)} cluster(s), {placement.get('batch', 1)} image(s) per run"
              + (", mvbatch (4 images a layer, weight tiles shared)" if placement.get("mvbatch") else ""))
    if model.metadata.get("split"):
        print(split_table(model.metadata["split"]))
    print(activity_table(device.cluster_activity(), sum(s.timing.total_cycles for s in device.simulators)))
    _print_coverage(model.metadata)
    return 0


def cmd_report(args) -> int:
    """`tessera report`: the compile report of a binary (compiler/report/)."""
    from compiler.report import write_report

    path = write_report(args.binary, args.output, args.diagnosis)
    print(f"wrote {path}: the compile report of {args.binary}; open it in a browser (docs/report.md)")
    return 0


def split_table(rows: list[dict]) -> str:
    """Split mode's decisions (the distribute pass's, as codegen followed
    them): per layer, the axis, whether it spans cards, and each worker's
    share (a CONV layer's range of the axis; a map layer's run of its jobs)."""
    lines = ["split: per layer, each cluster's share (card.cluster: range)",
             f"  {'layer':<28}{'op':<15}{'across':<10}{'axis':<7}shares"]
    for row in rows:
        shares = row.get("shares") or []
        workers = len(shares)
        text = "  ".join(f"{i}:{a}-{b}" for i, share in enumerate(shares) if share for a, b in [share])
        if "jobs" in row:
            text = f"{text} of {row['jobs']} jobs"
        lines.append(f"  {row['layer']:<28}{row['op']:<15}{row['across']:<10}{row['axis']:<7}"
                     f"{text if workers else '-'}")
    return "\n".join(lines)


def activity_table(activity: dict, total_cycles: int) -> str:
    """Per cluster: its occupancy (MAC and vector work over the run's
    cycles) and where its time goes."""
    kinds = ("MAC", "vector", "DMA", "barrier wait")
    lines = ["clusters: busy cycles per kind of work (DMA overlaps compute); occupancy: (MAC + vector) / hwtime",
             f"  {'card.cluster':<14}" + "".join(f"{k:>14}" for k in kinds) + f"{'occupancy':>11}"]
    for (card, cluster), busy in sorted(activity.items()):
        occupancy = (busy["MAC"] + busy["vector"]) / total_cycles if total_cycles else 0.0
        lines.append(f"  {f'{card}.{cluster}':<14}" + "".join(f"{busy[k]:>14}" for k in kinds)
                     + f"{100 * occupancy:>10.0f}%")
    return "\n".join(lines)


def _print_coverage(metadata) -> None:
    """The coverage recorded at compile time: each CPU node's reason, then the summary."""
    from compiler.coverage import recorded_coverage

    report = recorded_coverage(metadata)
    if report is None:
        print("coverage: not recorded in this binary (compiled by an older Tessera)")
        return
    print(report.table())
    print(report.summary_line())


__all__ = ["add_commands", "cmd_run_compiled", "compile_options", "is_binary", "TesseraError"]

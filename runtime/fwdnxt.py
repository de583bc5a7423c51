"""The FWDNXT-style Python API (shared/spec/fwdnxt-python-api.md).

    from runtime import FWDNXT
    ie = FWDNXT()
    size = ie.Compile("224x224x3", "model.onnx", "model.bin", samples=images)
    ie.Init("model.bin", "")
    result = np.empty(size, np.float32)
    ie.Run(image, result)                  # the device backend: the simulator here
    ie.GetInfo("hwtime")                   # estimated accelerator milliseconds of that run
    ie.PutInput(image, "tag")              # asynchronous: two input buffers,
    ie.GetResult(result)                   # results in input order -> "tag"

Run uses the device backend (with no card attached, the instruction-accurate
simulator; GetInfo('backend') says so), Run_sw always the simulator, Run_th
the float reference program stored in the binary. PutInput copies its input
and the simulated device runs it on a worker thread (runtime/requests.py)
while the caller goes on; GetResult gives the results back in input order.
Compile needs the compiler (onnx and the rest) and imports it only when
called; everything else needs numpy and numba only. Arguments are checked
and every misuse (an input with the wrong number of values or not float32,
a result buffer of the wrong size, Run before Init, a call after Free, an
unknown flag or a bad value) raises FWDNXTError saying what is wrong. Inputs
are taken by size, as FWDNXT took them (NCHW, CHW, flat, a batch's images
concatenated); a flag FWDNXT took that has no effect on the simulator is
taken with a FWDNXTWarning, once. docs/fwdnxt.md has the flags, the sizes
Compile, Init and GetInfo return, and the asynchronous rules.
"""
from __future__ import annotations

import itertools
import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from runtime import fwdnxt_buffers as flat
from runtime import fwdnxt_debug as debug
from runtime import hardware
from runtime.compiled import CompiledModel
from runtime.engine import Engine
from runtime.errors import TesseraError
from runtime.files import FileError, check_writable
from runtime.fwdnxt_flags import (
    ACTIONS,
    ALIASES,
    FLAGS,
    INFO,
    REJECTED_INFO,
    FWDNXTError,
    FWDNXTWarning,
    check_debug,
    check_value,
    help_text,
    option_settings,
    warn_once,
)
from runtime.nonfinite import NonFiniteInputError, nonfinite_policy
from runtime.preprocess import PreprocessError, PreprocessSpec
from runtime.requests import Cancelled, Closed, EngineQueue, InOrderBuffers, Request
from runtime.trace import HostRecorder
from runtime.version import TAGGED as VERSION

__all__ = ["FWDNXT", "FWDNXTError", "FWDNXTWarning"]

BACKEND = debug.BACKEND
BUFFERS = 2
"""Input buffers per engine (FWDNXT's double buffering, api-notes 1.6)."""


def _defaults() -> dict[str, Any]:
    return {name: flag.default for name, flag in FLAGS.items() if name not in ACTIONS}


class FWDNXT:
    """One inference context: Compile a model, Init a binary, Run it (or
    PutInput/GetResult a stream of inputs)."""

    def __init__(self):
        self._flags = _defaults()
        self._given: set[str] = set()
        """Flags SetFlag set since the last reset (hwlinear unset leaves linear layers to the policy)."""
        self._session: _Session | None = None
        self._bitfile: str | None = None
        self._freed = False
        self._hwtime = 0.0
        self._last_get = threading.local()

    # ------------------------------------------------------------ compile and load
    def Compile(self, image: str, modeldir: str, outfile: str, numcard: int | None = None,
                numclus: int | None = None, nlayers: int = -1, samples: Sequence | None = None
                ) -> int | tuple[int, ...]:
        """Compile the ONNX model ``modeldir`` for inputs of size ``image``
        ("WxHxC" or an image path) into ``outfile``, for ``numcard`` cards of
        ``numclus`` clusters (default: the nfpgas and nclusters flags, 1);
        ``samples`` are calibration inputs (synthetic data, with a warning,
        without them). Returns the number of output values of one
        cluster's images, a tuple for several outputs: one image's unless
        imgs_per_cluster > 1 (api-notes 1.5: the 2018 tutorial allocates
        ``numcard * numclus`` times it, threadedbatchdemo divides it by
        imgs_per_cluster). Init returns the whole run's; GetInfo answers
        both ('swoutsize', 'outsize') and one image's ('imgoutsize')."""
        self._alive("Compile")
        flags = self._flags
        numcard = _count("numcard", flags["nfpgas"] if numcard is None else numcard, 1)
        numclus = _count("numclus", flags["nclusters"] if numclus is None else numclus, 1)
        nlayers = _count("nlayers", nlayers, -1)
        if nlayers == -1:
            nlayers = flags["nlayers"]
        if flags["ignore_transpose"]:
            _no_edge_transpose(modeldir)
        try:
            from compiler.compile import PlacementError, compile_model
        except ImportError as exc:
            raise FWDNXTError(f"Compile needs Tessera's compiler and its dependencies (onnx): {exc}. "
                              "Compile on a machine with `pip install tessera`, then Init the binary here") from exc
        with warnings.catch_warnings():
            if "w" not in flags["debug"]:
                warnings.simplefilter("ignore")
            try:
                compiled = compile_model(modeldir, image=image, samples=samples, outfile=outfile, numcard=numcard,
                                         numclus=numclus, nlayers=nlayers, hwlinear=self._hwlinear(),
                                         split=bool(flags["clustersbatchmode"]),
                                         imgs_per_cluster=flags["imgs_per_cluster"], mvbatch=bool(flags["mvbatch"]),
                                         mode="int8" if flags["int8mode"] else "int16")
            except (PlacementError, FileError) as exc:
                raise FWDNXTError(f"Compile: {exc}") from exc
        return flat.per_cluster(compiled)

    def Init(self, infile: str | os.PathLike, bitfile: str = "") -> int | tuple[int, ...]:
        """Load the binary ``infile`` and prepare to run it. A model loaded
        before is freed once the new one is loaded (as Free frees it); when
        loading fails, it stays loaded. ``bitfile`` is recorded (the
        simulator needs none; "" = use what is loaded)."""
        self._alive("Init")
        from runtime.binary import read_binary

        if not isinstance(infile, (str, os.PathLike)):
            raise FWDNXTError(f"Init: infile must be the path of a compiled binary, got {type(infile).__name__}")
        if not isinstance(bitfile, str):
            raise FWDNXTError(f"Init: bitfile must be a path string or '', got {type(bitfile).__name__}")
        if bitfile and not os.path.isfile(bitfile):
            raise FWDNXTError(f"Init: bitfile {bitfile!r} does not exist")
        try:
            engine = Engine(read_binary(infile), nonfinite=self._flags["nonfinite"] or None)
        except TesseraError as exc:
            raise FWDNXTError(f"Init: {exc}") from exc
        except OSError as exc:
            raise FWDNXTError(f"Init: cannot read {str(infile)!r}: {exc}") from exc
        self._shutdown()
        queue = EngineQueue(engine, after_run=_dumper(engine, self._flags))
        buffers = InOrderBuffers(queue, BUFFERS)
        self._session = _Session(engine, queue, buffers, weakref.finalize(self, _close, buffers, queue))
        self._bitfile = bitfile or self._bitfile
        self._debug_init(engine, infile)
        return engine.model.output_counts()

    def _debug_init(self, engine: Engine, infile) -> None:
        """The debug letters that act at Init (runtime/fwdnxt_flags.py DEBUG_LETTERS)."""
        letters = self._flags["debug"]
        for line in debug.init_lines(engine, letters, str(infile)):
            print(f"FWDNXT: {line}")
        folder = Path(self._flags["dumpdir"] or ".")
        if "i" in letters or "J" in letters:
            folder.mkdir(parents=True, exist_ok=True)
        if "i" in letters:
            debug.write_instructions(engine.model, folder)
        if "J" in letters:
            debug.write_partition(engine.model, folder)

    def Free(self) -> None:
        """Release the loaded model; any later call is an error. Inputs put
        and not yet started are cancelled, a run in progress finishes; a
        PutInput waiting for a buffer raises FWDNXTError and a GetResult
        waiting returns None (no result will come)."""
        self._freed = True
        self._shutdown()

    def _shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.closer()

    # ------------------------------------------------------------ flags and info
    def SetFlag(self, name: str, value: Any = "") -> None:
        """Set a flag (values may be given as strings, as FWDNXT takes them).
        Every flag FWDNXT took is taken: one with no effect on the simulator
        (or a value of one) is stored and warns once, naming it and why
        (docs/fwdnxt.md); an unknown name or a bad value raises FWDNXTError."""
        self._alive("SetFlag")
        _name("SetFlag", name)
        if name == "help":
            print(help_text())
        elif name == "reset":
            self._flags.update(_defaults())
            self._given.clear()
        elif name == "options":
            settings, ignored = option_settings(str(value))
            for letter, flag, setting, why in settings:
                self._store(flag, setting)
                if why:
                    _no_effect(FLAGS[flag], setting, why, f"options letter {letter!r} ({flag}={setting})")
            for letter, why in ignored.items():
                warn_once(f"options:{letter}", f"SetFlag: options letter {letter!r} has no effect on the simulator: "
                          f"{why}", stacklevel=2)
            self._flags["options"] += "".join(c for c in dict.fromkeys(str(value)) if c not in self._flags["options"])
        elif name not in FLAGS:
            raise FWDNXTError(f"SetFlag: unknown flag {name!r}; the flags are {sorted(FLAGS)} "
                              "(SetFlag('help') says what each does)")
        else:
            value, why = check_value(FLAGS[name], value)
            if name == "debug":
                _, ignored = check_debug(value)
                for letter, reason in ignored.items():
                    warn_once(f"debug:{letter}", f"SetFlag: debug letter {letter!r} has no effect on the simulator: "
                              f"{reason}", stacklevel=2)
            elif name == "bitfile" and value and not os.path.isfile(value):
                raise FWDNXTError(f"SetFlag: bitfile {value!r} does not exist")
            elif name == "dumpdir" and value and os.path.exists(value) and not os.path.isdir(value):
                raise FWDNXTError(f"SetFlag: dumpdir {value!r} is a file, not a folder")
            elif name == "trace" and value:
                try:
                    check_writable(value)
                except FileError as exc:
                    raise FWDNXTError(f"SetFlag: trace {value!r}: {exc.cause}") from None
            self._store(name, value)
            if why:
                _no_effect(FLAGS[name], value, why)
        if name in ("nonfinite", "reset") and self._session is not None:
            self._session.engine.nonfinite = nonfinite_policy(self._flags["nonfinite"] or None)

    def _hwlinear(self) -> bool | None:
        """hwlinear as FWDNXT means it when set (1: linear layers on the
        accelerator, 0: on the CPU); unset, Tessera's default: where the
        affinity policy finds they pay (passes/affinity.py)."""
        return bool(self._flags["hwlinear"]) if "hwlinear" in self._given else None

    def _store(self, name: str, value: Any) -> None:
        self._given.add(name)
        self._flags[name] = value
        if name in ALIASES:
            self._flags[ALIASES[name]] = value
        if name == "bitfile":
            self._bitfile = value or None

    def GetInfo(self, name: str) -> Any:
        """Any name of docs/fwdnxt.md: the hardware, the loaded binary, the
        last run, or any flag Tessera implements."""
        self._alive("GetInfo")
        _name("GetInfo", name)
        if name in INFO:  # before the flags: addr_off and addroff are both
            return self._info(name)
        if name in self._flags:
            return self._flags[name]
        if name in ACTIONS:
            raise FWDNXTError(f"GetInfo: {name!r} is an action of SetFlag, not a setting to read back")
        if name in REJECTED_INFO:
            raise FWDNXTError(f"GetInfo: {name!r} has no meaning on the simulator: {REJECTED_INFO[name]}")
        raise FWDNXTError(f"GetInfo: unknown name {name!r}; known: {sorted([*INFO, *self._flags])}")

    def _info(self, name: str) -> Any:
        """The answer to one INFO name: the names of the loaded binary need
        Init; the hardware's answer for the default card before it."""
        session = self._session
        config = session.engine.model.config if session is not None else hardware.HardwareConfig()

        def model() -> CompiledModel:
            return self._loaded(f"GetInfo({name!r})").engine.model

        def placed(key: str) -> int:
            value = model().metadata.get("placement", {}).get(key, 1)
            return value if isinstance(value, int) else 1

        answers = {
            "hwtime": lambda: float(self._hwtime),
            "numcluster": lambda: placed("numclus"), "numfpga": lambda: placed("numcard"),
            "numbatch": lambda: model().batch * (model().inputs[0].shape[:1] or (1,))[0],
            "outsize": lambda: model().output_counts(), "swoutsize": lambda: flat.per_cluster(model()),
            "imgoutsize": lambda: flat.per_image(model()),
            "freq": lambda: int(round(config.clock_hz / 1e6)), "maxcluster": lambda: config.clusters_per_card,
            "maxfpga": lambda: hardware.MAX_CARDS, "version": lambda: VERSION, "build": _build,
            "hwversion": lambda: f"{BACKEND} (no card attached)", "hwbuild": config.digest,
            "addr_off": lambda: model().dram_size, "addroff": lambda: model().dram_size,
            "busy_comp": lambda: session.queue.busy if session is not None else 0,
            "outshape": lambda: debug.outshape(model()),
            "inshapes": lambda: ";".join("x".join(map(str, t.shape)) for t in model().inputs),
            "outshapes": lambda: ";".join("x".join(map(str, t.shape)) for t in model().outputs),
            "innames": lambda: ";".join(t.name for t in model().inputs),
            "outnames": lambda: ";".join(t.name for t in model().outputs),
            "backend": lambda: BACKEND, "config": lambda: model().config.to_dict(),
            "preprocess": lambda: _recorded_preprocess(model().metadata),
            "print_flags": self._print_flags, "help": help_text,
        }
        return answers[name]()

    def _print_flags(self) -> str:
        text = "\n".join(f"{name}={value!r}" for name, value in self._flags.items())
        print(text)
        return text

    # ------------------------------------------------------------ running
    def Run(self, image, result) -> None:
        """One inference on the device backend (the simulator; runsw=2: the
        float reference), ``result`` (a preallocated float32 array, a tuple
        for several outputs) filled in place. Inputs put before and not yet
        run are not disturbed: Run takes the device between two of them and
        neither takes a buffer nor changes what GetResult returns."""
        self._run("Run", image, result, device=self._flags["runsw"] != 2)

    def Run_sw(self, image, result) -> None:
        """One inference on the bit-accurate simulator."""
        self._run("Run_sw", image, result, device=True)

    def Run_th(self, image, result) -> None:
        """One inference of the float reference program on the CPU."""
        engine = self._loaded("Run_th").engine
        images = flat.inputs("Run_th", engine.model, image)
        targets = flat.results("Run_th", engine.model, result)
        recorder = self._recorder()
        try:
            outputs = [engine.run_reference(feeds, recorder) for feeds in images] if len(images) > 1 else \
                [engine.run_reference(images[0], recorder)]
        except TesseraError as exc:
            raise FWDNXTError(f"Run_th: {exc}") from exc
        flat.fill(engine.model, targets, outputs)
        if recorder is not None:
            self._trace("Run_th", engine, recorder, device=False)

    def _run(self, call: str, image, result, device: bool) -> None:
        engine, queue, _, _ = self._loaded(call)
        images = flat.inputs(call, engine.model, image)
        targets = flat.results(call, engine.model, result)
        # outputs straight into the result buffers, unless something runs after the device's last write:
        # comparesw's float reference reads the inputs (a result buffer that is also the input would have
        # been overwritten), dumpdir's DRAM dump can fail (a failed call leaves the buffers as they were)
        flags = self._flags
        into = None if flags["comparesw"] or flags["dumpdir"] else flat.destinations(engine.model, targets)
        recorder = self._recorder()
        # (positional: a class called with keywords builds a dict of them, a fifth of a microsecond)
        request = queue.run(Request(images, None, device, False, recorder, into))
        self._finish(call, engine, request, targets)
        if flags["breaklayer"] == 2 and device:
            for line in debug.layer_time_lines(engine):
                print(f"FWDNXT: {call}: {line}")
        if recorder is not None:
            self._trace(call, engine, recorder, device)

    def _recorder(self) -> HostRecorder | None:
        """A recorder of one run's host spans while the trace flag is set."""
        return HostRecorder() if self._flags["trace"] else None

    def _trace(self, call: str, engine: Engine, recorder: HostRecorder | None, device: bool, tag: str = "") -> None:
        """The trace flag: one run's trace written to its file, after the
        results are in the caller's buffer; a failed write is a FWDNXTError
        naming the file (the results stay in the buffer)."""
        path = self._flags["trace"]
        if recorder is None or not path:
            return
        try:
            engine.write_trace(path, recorder, device, {"api": "FWDNXT", "call": call})
        except FileError as exc:
            raise FWDNXTError(f"{call}: trace {exc.path!r} could not be written: {exc.cause}; the run's results are "
                              f"in the result buffer{tag}") from exc

    def PutInput(self, image, userobj) -> bool:
        """Copy ``image`` into a free input buffer and start the simulated
        device on it as soon as it is free; ``userobj`` comes back from the
        GetResult of this input. Both buffers held (until a GetResult):
        waits, or returns False with blockingmode 0. ``PutInput(None,
        None)`` puts an end marker: the GetResult reaching it returns None
        (as does the GetResult of a real input put with userobj None; its
        ``at_end`` tells the two apart)."""
        engine, _, buffers, _ = self._loaded("PutInput")
        try:
            if image is None:
                if userobj is not None:
                    raise FWDNXTError("PutInput: an image of None is the end marker, which takes no userobj "
                                      f"(its GetResult returns None); got userobj {userobj!r}")
                buffers.put_end()
                return True
            images = flat.inputs("PutInput", engine.model, image, copy=True)
            request = Request(images, userobj, device=self._flags["runsw"] != 2, recorder=self._recorder())
            if request.device:
                engine.check_finite(images)
            return buffers.put(request, block=bool(self._flags["blockingmode"]))
        except (Closed, NonFiniteInputError) as exc:
            raise FWDNXTError(f"PutInput: {exc}") from None

    def GetResult(self, result) -> Any:
        """Fill ``result`` (as Run's) with the oldest input's outputs and
        return its userobj, waiting for them (blockingmode 0: None when they
        are not ready). None at the end marker, or when Free came first;
        ``at_end`` and ``got_result`` then say which None this was."""
        self._last_get.outcome = None
        engine, _, buffers, _ = self._loaded("GetResult")
        targets = flat.results("GetResult", engine.model, result)
        try:
            request = buffers.take(block=bool(self._flags["blockingmode"]))
        except Closed:
            self._last_get.outcome = "end"
            return None
        if request is None:
            return None
        if request.is_end or isinstance(request.error, Cancelled):
            self._last_get.outcome = "end"
            return None
        self._finish("GetResult", engine, request, targets)
        self._last_get.outcome = "result"
        self._trace("GetResult", engine, request.recorder, request.device, f" (the input put with userobj "
                    f"{request.tag!r})")
        return request.tag

    @property
    def at_end(self) -> bool:
        """Whether this thread's last GetResult returned None because no
        result is left to give: it reached an end marker (``PutInput(None,
        None)``) or Free came first. False after a result, whatever its
        userobj (None included), and after "not ready" (blockingmode 0)."""
        return getattr(self._last_get, "outcome", None) == "end"

    @property
    def got_result(self) -> bool:
        """Whether this thread's last GetResult filled ``result``: its return
        value, None included, is then the userobj of a real input."""
        return getattr(self._last_get, "outcome", None) == "result"

    def _finish(self, call: str, engine: Engine, request: Request, targets: list[np.ndarray]) -> None:
        """A finished request's outputs into ``targets``, or its error as
        FWDNXTError; hwtime, debug 'b' and comparesw."""
        error = request.error
        if error is not None:
            if isinstance(error, Cancelled):
                raise FWDNXTError(f"{call}: Free was called before the run: {error}") from error
            tag = f" of the input put with userobj {request.tag!r}" if call == "GetResult" else ""
            kind = "" if isinstance(error, TesseraError) else f"internal error {type(error).__name__}: "
            raise FWDNXTError(f"{call}: the run{tag} failed: {kind}{error}") from error
        if request.device:
            self._hwtime = request.hwtime_ms
            flags = self._flags
            if "b" in flags["debug"]:
                print(f"FWDNXT: {call}: hwtime {self._hwtime:.3f} ms ({engine.device.instructions} instructions)")
            if flags["comparesw"]:
                self._compare(call, engine, request)
        flat.fill(engine.model, targets, request.outputs, request.into)

    def _compare(self, call: str, engine: Engine, request: Request) -> None:
        """comparesw: the run against the float reference, printed."""
        try:
            references = [engine.run_reference(feeds) for feeds in request.images]
        except TesseraError as exc:
            raise FWDNXTError(f"{call}: comparesw needs the float reference: {exc}") from exc
        for line in debug.compare_lines(engine.model, request.outputs, references, "R" in self._flags["debug"]):
            print(f"FWDNXT: {call}: {line}")

    def _alive(self, call: str) -> None:
        if self._freed:
            raise FWDNXTError(f"{call} called after Free(); create a new FWDNXT object")

    def _loaded(self, call: str) -> _Session:
        self._alive(call)
        session = self._session
        if session is None:
            raise FWDNXTError(f"{call} called before Init(); load a compiled binary first")
        return session


class _Session(NamedTuple):
    """A loaded binary: its engine, the queue that runs it, PutInput's
    buffers, and what closes them (Free, a new Init, or garbage collection)."""

    engine: Engine
    queue: EngineQueue
    buffers: InOrderBuffers
    closer: weakref.finalize


def _recorded_preprocess(metadata: dict) -> dict | None:
    """The pre-processing the binary records (runtime.preprocess.PreprocessSpec, checked: a binary is untrusted)."""
    try:
        spec = PreprocessSpec.from_metadata(metadata)
    except PreprocessError as exc:
        raise FWDNXTError(f"GetInfo('preprocess'): {exc}") from None
    return None if spec is None else spec.to_metadata()


def _build() -> str:
    import numba

    from runtime.binary import VERSION as FORMAT

    return f"{VERSION} (binary format {FORMAT}, numpy {np.__version__}, numba {numba.__version__})"


def _no_edge_transpose(modeldir) -> None:
    """ignore_transpose=1 has no effect unless the model has a Transpose at
    an input or an output, which Tessera computes: then FWDNXT would have
    read the inputs in another layout than Tessera does, so refuse."""
    try:
        import onnx

        graph = onnx.load(str(modeldir), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - Compile itself reports an unreadable model
        return
    edges = {t.name for t in graph.input} | {t.name for t in graph.output}
    for node in graph.node:
        if node.op_type == "Transpose" and edges & {*node.input, *node.output}:
            raise FWDNXTError(f"Compile: ignore_transpose=1, and Transpose {node.name or node.output[0]!r} is at an "
                              "input or output of the model: FWDNXT ignored it, Tessera computes it, so inputs "
                              "given for one would be read wrongly by the other. Set ignore_transpose to 0 and give "
                              "the model's inputs in its own layout")


def _close(buffers: InOrderBuffers, queue: EngineQueue) -> None:
    """Wake every waiting call, cancel what has not started, join the worker
    (Free, a new Init, or the FWDNXT object collected)."""
    buffers.close()
    queue.close(cancel=True)


def _dumper(engine: Engine, flags: dict[str, Any]):
    """The after-run hook of dumpdir: each card's DRAM after every device run."""
    runs = itertools.count()

    def dump(request: Request) -> None:
        if flags["dumpdir"]:
            debug.dump_drams(engine, Path(flags["dumpdir"]), next(runs))

    return dump


def _name(call: str, name: Any) -> None:
    """A flag or info name must be a string (a list would not even hash)."""
    if not isinstance(name, str):
        raise FWDNXTError(f"{call}: the name must be a string, got {type(name).__name__} {name!r:.40}")


def _no_effect(flag, value: Any, why: str, via: str = "") -> None:
    """The once-per-process warning for a flag (or a value of one) taken
    with no effect on the simulator; called from SetFlag."""
    what = f"flag {flag.name!r}" if flag.inert else f"{flag.name}={value!r}"
    warn_once(flag.name if flag.inert else f"{flag.name}={value}",
              f"SetFlag: {via + ' sets ' if via else ''}{what}, which has no effect on the simulator: {why}",
              stacklevel=3)


def _count(name: str, value: Any, minimum: int) -> int:
    """An integer argument of Compile, at least ``minimum``, or FWDNXTError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise FWDNXTError(f"Compile: {name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)

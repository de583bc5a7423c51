"""The FWDNXT API's SetFlag and GetInfo names, each with what it does here.

Every name of shared/reference/api-notes.md 1.4.1 to 1.4.4 is in one of
these tables. SetFlag takes every flag the original took, as it took it
(and returns None, as it did): a flag Tessera implements does what it
says; a flag, or a value of one, that has no effect on the simulated system
is stored (GetInfo reads it back) and warns once per process, naming the
flag and why (``ignored``). Only values whose effect Tessera cannot give
and whose silent loss would change results are refused with the reason
(``remove``, ``no_rearrange`` other than 0). The ``'debug'`` and
``'options'`` letters are tables too; an option letter is a short name for
setting a flag. The help text (SetFlag('help'), GetInfo('help')) and the
checks of runtime/fwdnxt.py come from here, and docs/fwdnxt.md repeats the
tables in prose.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

from runtime.errors import TesseraError


class FWDNXTError(TesseraError):
    """A misuse of the FWDNXT API (the message says which call and why)."""


class FWDNXTWarning(UserWarning):
    """A flag, value or letter FWDNXT took that has no effect on the
    simulator (given once per process and name)."""


@dataclass(frozen=True)
class Flag:
    """One SetFlag name: its ``default``, what it means, when it applies
    (Compile, Init, runs, now). ``values`` lists the values with their
    meaning here (empty: any int of at least ``minimum``, or any string
    when the default is one). ``ignored``: True when no value has an effect
    here (any value of the right type is taken and warned about), else the
    values taken with no effect; ``why`` says why they have none, or why
    the values that are neither are refused."""

    name: str
    default: Any
    meaning: str
    applies: str = ""
    values: tuple = ()
    minimum: int | None = None
    why: str = ""
    ignored: bool | tuple = ()

    @property
    def inert(self) -> bool:
        """No value of this flag has an effect on the simulator (a flag
        with ``values`` and ``ignored`` True has those values' meaning, and
        any other value has no effect)."""
        return self.ignored is True and not self.values


_TILER = ("Tessera's tile pass chooses each layer's loop order, tiling and padding from the cycle model at "
          "Compile; there is no algorithm to force")
_PROFILE = ("the tile pass already keeps, per layer, the tiling the cycle model finds fastest, at Compile, so "
            "there is no compile-run-keep-best loop to run; per-layer times: breaklayer=2 (options 'L'); a "
            "timeline of each run: SetFlag('trace', 'run.json')")
_BANKS = ("the simulated cards have no program memory banks: each (card, cluster) stream is decoded once at "
          "Init and runs in place")
_INSTR = ("instruction streams are sections of the binary of their own, outside the card's DRAM map, with no "
          "size limit to set")
_REMOVE = "Compile takes the model from its inputs: cut the ONNX model first (nlayers keeps the first layers)"
_VARFP = ("the simulated datapath is int8 or 16-bit with the scales calibration chooses (docs/quantization.md); "
          "there is no variable-fixed-point bitfile: calibrate with Compile's samples, pick the width with int8mode")
_RANDOM = ("nothing in Tessera is random: synthetic calibration data is fixed, and the runtime makes no random "
           "inputs or weights")

_CARD = "no card is attached: the simulator runs the binary, as fpgaid 'sim' does"

FLAGS: dict[str, Flag] = {f.name: f for f in (
    Flag("debug", "w", "letters (see DEBUG_LETTERS): what Init and runs print or write", "Init, runs"),
    Flag("options", "", "letters (see OPTION_LETTERS), each a short name for setting a flag", "now"),
    Flag("nobatch", 0, "1: split mode, one input with each layer divided over the clusters and cards "
         "(same as clustersbatchmode)", "Compile", (0, 1)),
    Flag("clustersbatchmode", 0, "1: split mode (as nobatch); 0: batch mode, each cluster of each card runs the "
         "whole program on its own inputs", "Compile", (0, 1)),
    Flag("hwlinear", 0, "1: fully-connected layers on the accelerator too", "Compile", (0, 1)),
    Flag("imgs_per_cluster", 1, "inputs each cluster takes per run in batch mode", "Compile", minimum=1),
    Flag("mvbatch", 0, "1: each of a cluster's 4 vector-MAC units on its own image (imgs_per_cluster a multiple "
         "of 4)", "Compile", (0, 1)),
    Flag("nlayers", -1, "compile only the first N layers (-1: all)", "Compile", minimum=-1),
    Flag("nclusters", 1, "clusters per card Compile uses when its numclus is not given", "Compile", minimum=1),
    Flag("nfpgas", 1, "cards Compile uses when its numcard is not given", "Compile", minimum=1),
    Flag("firstcluster", 0, "first cluster the program uses", "Compile", (0,), minimum=0, ignored=True,
         why="each FWDNXT object simulates cards of its own, so its program starts at cluster 0 and never "
             "shares clusters with another model"),
    Flag("int8mode", 1, "1: int8 datapath; 0: 16-bit fixed point (int16)", "Compile", (0, 1), ignored=(2, 3, 4),
         why="the precision is chosen per model at Compile; automatic (2) and mixed 16/8-bit (3, 4) modes have no "
             "equivalent, and Compile uses the int8 datapath"),
    Flag("blockingmode", 1, "1: PutInput and GetResult wait; 0: PutInput returns False when both input buffers "
         "are held, GetResult None when no result is ready", "runs", (0, 1)),
    Flag("comparesw", 0, "1: every Run and GetResult also runs the float reference (Run_th) and prints the "
         "largest difference and the SNR of each output", "runs", (0, 1)),
    Flag("runsw", 0, "0 and 1: Run runs the bit-accurate simulator (which the device backend is here); "
         "2: Run and PutInput run the float reference instead", "runs", (0, 1, 2)),
    Flag("nonfinite", "", "NaN and Inf in an input of Run, Run_sw or PutInput: 'error', a FWDNXTError naming the "
         "input and the first such value; 'saturate', +-Inf to the grid's end codes (NaN still an error); '': "
         "as the environment variable TESSERA_NONFINITE says, else 'error'", "runs", ("", "error", "saturate"),
         why="the policies are 'error' and 'saturate' (docs/runtime.md, \"Non-finite inputs\")"),
    Flag("breaklayer", 0, "2: after every Run, print each accelerator layer's modelled time", "runs", (0, 2),
         ignored=(1,), why="the engine returns a run's outputs only, the device's intermediate tensors are not "
                           "kept (Compile with nlayers=N for the output of the first N layers)"),
    Flag("heterogeneous", 1, "layers the accelerator cannot run go to the CPU, wherever they are", "Compile", (1,),
         ignored=True, why="the partitioner always runs such layers on the CPU, mid-network too"),
    Flag("rand", 0, "0: deterministic", "now", (0,), ignored=True, why=_RANDOM),
    Flag("fpgaid", "sim", "the device: 'sim' (or -1, the first found) is the simulator", "Init", ("sim", "-1"),
         ignored=("510", "511", "852"), why=_CARD),
    Flag("dumpdir", "", "a folder: every device run writes each card's DRAM there (run<N>_card<C>.bin), and "
         "debug 'i' and 'J' write there instead of the working folder", "Init, runs"),
    Flag("trace", "", "a file: after every Run, Run_sw, Run_th and GetResult (of an input put while it was set), "
         "the trace of that run in Chrome's trace-event format (docs/trace.md): the device's modelled timeline "
         "when it ran on the device, and the host's segments and CPU kernels ('' = off; the path must be "
         "writable)", "runs"),
    Flag("bitfile", "", "recorded only: the simulator needs no bitfile ('' = none); a path must exist", "now"),
    Flag("reset", "", "restore every flag's default", "now"),
    Flag("help", "", "print the flags, letters and GetInfo names", "now"),
    Flag("ignore_transpose", 0, "0: the model's own input and output layout", "Compile", (0,), ignored=(1,),
         why="Tessera computes a Transpose at a model's input or output (absorbed into the host's quantization); "
             "with 1, Compile refuses a model that has one, since its inputs would be read in another layout"),
    Flag("optimize_computes", 1, "1: computes planned by the cycle model", "Compile", (1,), ignored=True,
         why=_TILER),
    Flag("remove", 0, "remove N layers at the start (0: none)", "Compile", (0,), why=_REMOVE),
    Flag("lremove", 0, "remove N layers at the start (0: none)", "Compile", (0,), why=_REMOVE),
    Flag("no_rearrange", 0, "0: inputs are float32 host tensors the host lays out", "runs", (0,),
         why="inputs are float32 host tensors; the host quantizes and lays them out itself, so inputs already in "
             "the hardware's layout would be read wrongly"),
    Flag("convalgo", 0, "convolution loop order", "Compile", ignored=True, why=_TILER),
    Flag("depthconvalgo", 3, "depthwise convolution algorithm", "Compile", ignored=True, why=_TILER),
    Flag("paddingalgo", 0, "padding optimisation", "Compile", ignored=True, why=_TILER),
    Flag("force_algo", 0, "force the convolution algorithm", "Compile", ignored=True, why=_TILER),
    Flag("gen_loops", 0, "generate loops in the instructions", "Compile", ignored=True, why=_TILER),
    Flag("multicu_vpadding", 0, "multi-MM vertical padding", "Compile", ignored=True, why=_TILER),
    Flag("profile", 0, "compile, run, keep the best options", "Compile", ignored=True, why=_PROFILE),
    Flag("compile_profile", 0, "compile, run, keep the best options", "Compile", ignored=True, why=_PROFILE),
    Flag("max_instr", 0, "bound on the instructions, placed before the data", "Compile", ignored=True, why=_INSTR),
    Flag("max_instruction_size", 0, "bound on the instructions' size", "Compile", ignored=True, why=_INSTR),
    Flag("two_programs", 0, "one program per memory bank", "Init", ignored=True, why=_BANKS),
    Flag("bufsmode", 0, "program per buffer, parametric offset or patching", "Init", ignored=True, why=_BANKS),
    Flag("parametric_offset", 0, "parametric buffer offsets", "Init", ignored=True, why=_BANKS),
    Flag("progload", 0, "progressive program loading", "Init", ignored=True, why=_BANKS),
    Flag("addr_off", 0, "base address of the memory map", "Init", ignored=True,
         why="each FWDNXT object has simulated cards and DRAM of its own, so no other memory map comes before "
             "this one; GetInfo('addr_off') gives this one's last address"),
    Flag("addroff", 0, "base address of the memory map", "Init", ignored=True,
         why="as addr_off: see GetInfo('addroff')"),
    Flag("quantize", 0, "run in float and record fixed-point metrics", "Compile", ignored=True,
         why="Compile calibrates from its samples (synthetic data without them) and quantizes in one step; "
             "runsw=2 runs the float reference"),
    Flag("seed", 0, "random seed", "now", ignored=True, why=_RANDOM),
    Flag("has_varfp", 0, "compile for a variable-fixed-point bitfile", "Compile", ignored=True, why=_VARFP),
    Flag("varfp", 0, "variable fixed point", "Compile", ignored=True, why=_VARFP),
    Flag("sandbox", 0, "read instructions from instr<card>_<clus>.txt", "Init", ignored=True,
         why="instruction streams come from the binary only, validated at Init"),
    Flag("initmeasure", 0, "measure initialisation", "Init", ignored=True,
         why="Init only fills the simulated DRAM and decodes the streams: there is no hardware to measure"),
    Flag("hwwait", 0, "sleep instead of polling", "runs", ignored=True,
         why="nothing is polled: a simulated run returns when its simulation ends"),
    Flag("temporary_save", 0, "keep temporary files", "Compile", ignored=True,
         why="Compile writes its outfile and nothing else: there are no temporary files"),
    Flag("prune", 0, "prune the model", "Compile", ignored=True,
         why="Tessera computes the whole ONNX model; it never prunes weights"),
)}
"""Every SetFlag name of api-notes 1.4.1 and 1.4.2, and Tessera's own (nonfinite, trace)."""

ACTIONS = ("help", "reset")
"""SetFlag names that do something at once and hold no value."""

ALIASES = {"nobatch": "clustersbatchmode", "clustersbatchmode": "nobatch"}
"""Flags that are one setting under two names (FWDNXT's, then MDLA's)."""

DEBUG_LETTERS: dict[str, tuple[str, str]] = {
    "b": ("basic prints at Init and after every run (hwtime, instructions)", ""),
    "w": ("warnings: without 'w' Compile keeps its warnings quiet", ""),
    "c": ("Init prints the DRAM map: its size, the weights image, each device tensor's address", ""),
    "C": ("Init prints the workload distribution: each device segment's streams by card, cluster and phase, "
          "and its images", ""),
    "n": ("Init prints the list of layers: device layers and CPU kernels, in order", ""),
    "s": ("Init prints the partitioning: the segments, and each CPU node with why it is not on the "
          "accelerator", ""),
    "S": ("Init prints the simulator's figures per device segment: instructions, cycles, MACs, DRAM traffic, "
          "efficiency", ""),
    "p": ("Init prints each device layer with its instruction range and ONNX nodes", ""),
    "i": ("Init writes each stream disassembled to instr<card>_<clus>_<program>.txt (in dumpdir, else the "
          "working folder)", ""),
    "J": ("Init writes partition.json (segments, layers, coverage) in dumpdir, else the working folder", ""),
    "Q": ("Init prints the quantization grid (dtype, scale, zero) of every tensor crossing between host and "
          "device", ""),
    "R": ("with comparesw, print every output value beside the reference's", ""),
    "r": ("", "nothing the simulator computes can be wrong against the bit-exact software model, which it is; "
              "comparesw compares with the float reference, where every value differs by rounding: use 'R'"),
    "d": ("", "the simulated card has no debug registers"),
    "a": ("", "the simulator does not record memory access patterns; 'S' prints the DRAM traffic"),
    "I": ("", "the compiler's intermediate instructions are not in the binary; 'i' dumps the final streams"),
    "t": ("", "a stream's instructions run inside one Numba loop with no per-instruction trace; 'i' dumps the "
              "streams and 'S' their timing"),
    "T": ("", "as 't': no per-instruction trace"),
    "o": ("", "the float reference runs on Tessera's executor, not thnets"),
}
"""SetFlag('debug', letters): (what it does, or '' and why it has no
effect here: such a letter is taken and warned about once)."""

OPTION_LETTERS: dict[str, tuple[str, Any] | str] = {
    "C": ("clustersbatchmode", 1), "H": ("hwlinear", 1), "m": ("mvbatch", 1), "s": ("comparesw", 1),
    "S": ("runsw", 1), "Q": ("runsw", 2), "L": ("breaklayer", 2), "z": ("breaklayer", 1), "d": ("rand", 0),
    "k": ("convalgo", 1), "r": ("convalgo", 2), "K": ("convalgo", 3), "f": ("force_algo", 1),
    "P": ("progload", 1), "w": ("hwwait", 1), "i": ("initmeasure", 1), "t": ("temporary_save", 1),
    "T": ("two_programs", 1), "o": ("parametric_offset", 1), "a": ("compile_profile", 1), "x": ("prune", 1),
    "n": ("optimize_computes", 0), "l": ("gen_loops", 1), "v": ("has_varfp", 1), "V": ("varfp", 1),
    "M": ("multicu_vpadding", 1), "B": ("sandbox", 1),
    "p": "clusters run in batch or split mode; layers are not pipelined across clusters",
}
"""SetFlag('options', letters): each letter sets (flag, value), checked
and warned about as that flag; or, a string, has no flag and no effect
here for the reason given (taken and warned about once)."""

INFO: dict[str, str] = {
    "hwtime": "float: modelled accelerator milliseconds of the last completed Run, Run_sw or GetResult",
    "numcluster": "clusters per card the binary uses",
    "numfpga": "cards the binary uses",
    "numbatch": "images per run (numcard x numclus x imgs_per_cluster in batch mode)",
    "outsize": "output values of one whole run, every image of the batch (Init's return value; a tuple for "
               "several outputs): the size of Run's result buffer",
    "swoutsize": "output values of one cluster's images, imgs_per_cluster of them (Compile's return value; a "
                 "tuple for several outputs): outsize / (numcard x numclus) in batch mode",
    "imgoutsize": "output values of one image (a tuple for several outputs): outsize / numbatch",
    "freq": "accelerator clock, MHz",
    "maxcluster": "clusters per card of the binary's card type (before Init: the default card)",
    "maxfpga": "cards the simulated system can have (runtime.hardware.MAX_CARDS, env TESSERA_MAX_CARDS)",
    "version": "Tessera's version",
    "build": "Tessera's version with the binary format and its numpy and numba",
    "hwversion": "the device: the simulator",
    "hwbuild": "the hardware config's fingerprint (the binary's, before Init the default card's)",
    "addr_off": "last address (bytes) of the binary's DRAM map on each card",
    "addroff": "as addr_off",
    "busy_comp": "input buffers whose run has not finished (0 to 2)",
    "outshape": "the first output as (W, H, planes, batch)",
    "inshapes": "input shapes, 'x' between dims, ';' between inputs",
    "outshapes": "output shapes, as inshapes",
    "innames": "input names, ';' between",
    "outnames": "output names, ';' between",
    "backend": "'simulator': Run's device backend",
    "config": "the binary's hardware config, as a dict",
    "preprocess": "how the binary's images are pre-processed, as the compiler recorded it (a dict: layout, "
                  "channel_order, scale, mean, std), or None",
    "print_flags": "prints every flag with its value, and returns that text",
    "help": "this text",
}
"""GetInfo names (besides every flag Tessera implements); ``REJECTED_INFO`` the others."""

REJECTED_INFO: dict[str, str] = {
    "temperature": "a simulated card has no temperature sensor",
    "hwdebug": "the simulated card has no debug registers",
}


def check_value(flag: Flag, value: Any) -> tuple[Any, str]:
    """``value`` as the flag stores it (an int, or a string) and, when it has
    no effect on the simulator, why (else ''); or FWDNXTError."""
    if isinstance(flag.default, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise FWDNXTError(f"SetFlag: flag {flag.name!r} takes an integer, got {value!r}") from None
        if flag.minimum is not None and number < flag.minimum:
            raise FWDNXTError(f"SetFlag: flag {flag.name!r} takes an integer of at least {flag.minimum}, "
                              f"got {number}")
        value = number
    elif not isinstance(value, str):
        value = str(value)  # FWDNXT passed every value through str()
    if flag.values and value in flag.values or not flag.values and not flag.ignored:
        return value, ""
    if flag.ignored is True or value in flag.ignored:
        return value, flag.why
    taken = [*flag.values, *flag.ignored]
    reason = flag.why if not flag.ignored and flag.why else f"it takes {taken}"
    raise FWDNXTError(f"SetFlag: {flag.name}={value!r}: {reason} (the values here: {taken})")


def check_debug(letters: str) -> tuple[str, dict[str, str]]:
    """Debug letters, each known, and those with no effect here with why; or FWDNXTError."""
    ignored = {}
    for letter in letters:
        if letter not in DEBUG_LETTERS:
            raise FWDNXTError(f"SetFlag: debug letter {letter!r} is unknown; the letters are "
                              f"{''.join(DEBUG_LETTERS)}")
        meaning, why = DEBUG_LETTERS[letter]
        if not meaning:
            ignored[letter] = why
    return letters, ignored


def option_settings(letters: str) -> tuple[list[tuple[str, str, Any, str]], dict[str, str]]:
    """The (letter, flag, value, why it has no effect or '') settings of option
    letters, each checked, and the letters with no flag and no effect here
    with why; or FWDNXTError naming the letter."""
    settings, ignored = [], {}
    for letter in letters:
        setting = OPTION_LETTERS.get(letter)
        if setting is None:
            raise FWDNXTError(f"SetFlag: options letter {letter!r} is unknown; the letters are "
                              f"{''.join(OPTION_LETTERS)}")
        if isinstance(setting, str):
            ignored[letter] = setting
            continue
        name, value = setting
        try:
            settings.append((letter, name, *check_value(FLAGS[name], value)))
        except FWDNXTError as exc:
            raise FWDNXTError(f"SetFlag: options letter {letter!r} ({name}={value}): "
                              f"{str(exc).removeprefix('SetFlag: ')}") from None
    return settings, ignored


def _option_effective(setting) -> bool:
    if isinstance(setting, str):
        return False
    flag = FLAGS[setting[0]]
    return setting[1] in flag.values or not flag.values and not flag.ignored


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(key: str, message: str, stacklevel: int = 3) -> None:
    """``message`` as a FWDNXTWarning, the first time ``key`` (a flag, a
    value of a flag or a letter) is used in this process."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, FWDNXTWarning, stacklevel=stacklevel + 1)


def _ignored_values(flag: Flag) -> str:
    return "others" if flag.ignored is True else "|".join(map(str, flag.ignored))


def help_text() -> str:
    """What SetFlag('help') prints and GetInfo('help') returns."""
    lines = ["SetFlag names (values, default; when it applies): what it does"]
    for flag in FLAGS.values():
        if not flag.inert:
            values = "|".join(map(str, flag.values)) if flag.values else type(flag.default).__name__
            lines.append(f"  {flag.name} ({values}, default {flag.default!r}; {flag.applies}): {flag.meaning}")
    lines.append("SetFlag('debug', letters):")
    lines += [f"  {k}: {meaning}" for k, (meaning, _) in DEBUG_LETTERS.items() if meaning]
    lines.append("SetFlag('options', letters):")
    lines += [f"  {k}: {s[0]}={s[1]}" for k, s in OPTION_LETTERS.items() if _option_effective(s)]
    lines.append("GetInfo names (and every SetFlag name above):")
    lines += [f"  {name}: {meaning}" for name, meaning in INFO.items()]
    lines.append("Taken with no effect on the simulator (a warning, once, says why): flags "
                 + ", ".join(f.name for f in FLAGS.values() if f.inert)
                 + "; values " + ", ".join(f"{f.name}={_ignored_values(f)}" for f in FLAGS.values()
                                           if f.ignored and not f.inert)
                 + "; debug letters " + "".join(k for k, (meaning, _) in DEBUG_LETTERS.items() if not meaning)
                 + "; options letters " + "".join(k for k, s in OPTION_LETTERS.items() if not _option_effective(s)))
    lines.append("Refused, with the reason: remove, lremove and no_rearrange other than 0; GetInfo "
                 + ", ".join(REJECTED_INFO))
    return "\n".join(lines)

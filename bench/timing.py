"""What every benchmark shares: the thread settings (set before numpy or
onnxruntime is imported) and warm, repeated timing."""
from __future__ import annotations

import os
import statistics
import time

THREADS = os.environ.get("BENCH_THREADS", "2")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TESSERA_NUM_THREADS")
"""The libraries' thread counts, each BENCH_THREADS unless already set."""
for _var in THREAD_VARS:
    os.environ.setdefault(_var, THREADS)

BLAS_CORE = {"avx2": "Haswell", "avx512bw": "SkylakeX", "avx512vnni": "SkylakeX"}
"""The kernels numpy's OpenBLAS (bench_gemm's reference) takes while the
runtime runs another CPU's kernel family (``TESSERA_GEMM_ISA``, docs/runtime.md
"Kernel families"): that CPU's, so that the GEMM is compared with a BLAS of
the same instructions. On a Zen 4 OpenBLAS otherwise takes its AVX-512
kernels. onnxruntime cannot be told so (MLAS reads the CPU's features itself)."""
if os.environ.get("TESSERA_GEMM_ISA") in BLAS_CORE:
    os.environ.setdefault("OPENBLAS_CORETYPE", BLAS_CORE[os.environ["TESSERA_GEMM_ISA"]])

PAUSE_S = 0.5
"""Pause between timing one library and the other: OpenBLAS's and
onnxruntime's idle threads spin for a while after a call and would slow the
other down."""


def time_runs(fn, runs: int, warmup: int = 3) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(fn, runs: int) -> float:
    return statistics.median(time_runs(fn, runs)) * 1e3


SETTLE_S = 0.1
"""Pause between the blocks :func:`paired_ms` alternates: longer than any
pool thread spins after a call, so neither library runs while the other's
idle threads still hold a core. Tessera's spin for 1.5 ms at most;
onnxruntime's (allow_spinning, its default) for about 40 ms: measured on a
2-core Zen 4 host, the process used 0.8-1.6 cores for 41 ms after a
MobileNetV2 call and nothing after. With the 10 ms pause used before,
Tessera's blocks ran beside them: its MobileNetV2 float path took 7.4-8.7
ms after onnxruntime's blocks against 4.7 ms after a no-op's, while
onnxruntime, after Tessera's, took what it took alone."""
BLOCK = 5
"""Timed calls in a row per block of :func:`paired_ms`."""


def paired_ms(ours, theirs, runs: int) -> tuple[float, float]:
    """Median ms of ``ours`` and of ``theirs`` over ``runs`` calls each,
    timed in alternating blocks of :data:`BLOCK` back-to-back calls (each
    block after one untimed call), so that a change in the shared machine's
    load over the run weighs on both medians alike, while every call runs
    warm, as in a stream of inferences."""
    return _alternating_ms(ours, theirs, runs, BLOCK, 1)


STREAM = 100
"""Timed calls per block of :func:`streamed_ms`."""


def streamed_ms(ours, theirs, runs: int) -> tuple[float, float]:
    """Median ms of ``ours`` and of ``theirs`` over at least ``runs`` calls
    each, timed in alternating blocks of :data:`STREAM` back-to-back calls
    (each block after a tenth as many untimed calls): a long stream of
    requests (a batch job, a server kept busy), where every thread of both
    libraries stays awake. :func:`paired_ms`'s blocks of five after a
    pause weigh how fast each library's threads come back: ResNet-10 at 32
    x 32 on a 2-core Zen 4, onnxruntime took 0.36-0.48 ms a call there and
    0.20 ms here, Tessera 0.34-0.42 and 0.31."""
    return _alternating_ms(ours, theirs, max(runs, 2 * STREAM), STREAM, STREAM // 10)


def _alternating_ms(ours, theirs, runs: int, block: int, untimed: int) -> tuple[float, float]:
    """Blocks of ``block`` timed calls of each side in turn, each after
    :data:`SETTLE_S` and ``untimed`` calls, until each has ``runs``; the
    two medians in ms."""
    times: tuple[list[float], list[float]] = ([], [])
    while len(times[1]) < runs:
        for fn, spent in ((ours, times[0]), (theirs, times[1])):
            time.sleep(SETTLE_S)
            for _ in range(untimed):
                fn()
            for _ in range(block):
                start = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


FRAME_S = 0.05
"""Time between two requests of :func:`paced_ms`: a camera's 20 frames a second."""


def paced_ms(ours, theirs, runs: int, every: float = FRAME_S) -> tuple[float, float]:
    """Median ms of ``ours`` and of ``theirs`` over ``runs`` calls each,
    alternating, each call ``every`` seconds after the one before: requests
    as a stream delivers them, when the pool threads have gone to sleep and
    the caches have cooled between calls (back-to-back timing misses both)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, spent in ((ours, times[0]), (theirs, times[1])):
            time.sleep(every)
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def pause() -> None:
    time.sleep(PAUSE_S)


def ort_options():
    """onnxruntime session options on THREADS threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(THREADS)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def spread(values, fmt: str = "{:.2f}") -> str:
    """min/median/max of ``values``, as every figure of issue 24 is printed."""
    values = sorted(values)
    return "/".join(fmt.format(v) for v in (values[0], statistics.median(values), values[-1]))


def host() -> str:
    """Which CPU the figures come from: its model name, family/model, the
    vector features that decide the kernels (AVX2, FMA, AVX-512, VNNI) and
    its caches, from /proc/cpuinfo and sysfs (Linux), else the platform;
    then the kernel family the runtime compiled for (another CPU's where
    ``TESSERA_GEMM_ISA`` emulates one: runtime.gemm.family.EMULATED)."""
    import platform
    try:
        with open("/proc/cpuinfo") as file:
            info = dict(line.split(":", 1) for line in file.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    features = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512vbmi", "avx_vnni", "amx_int8")
                if f in flags]
    caches = []
    for index in range(4):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/level") as level, \
                    open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size") as size, \
                    open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/type") as kind:
                if kind.read().strip() != "Instruction":
                    caches.append(f"L{level.read().strip()} {size.read().strip()}")
        except OSError:
            break
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')}), "
            f"{os.cpu_count()} cores, {' '.join(features) or 'no AVX2'}; {', '.join(caches) or 'caches unknown'}; "
            f"{kernel_family()}")


def kernel_family() -> str:
    """The runtime's kernel family: its name, the LLVM CPU it compiled for,
    VNNI and VBMI where it uses them, and the ``TESSERA_GEMM_ISA`` setting
    where one forced it."""
    from runtime.gemm.family import FORCED, available, host_isa
    if not available():
        return "kernels: numpy (no AVX2)"
    isa = host_isa()
    extras = [name for name, used in (("vnni", isa.vnni), ("vbmi", isa.vbmi)) if used]
    return f"kernels {isa.name} for {isa.cpu}{' ' + ' '.join(extras) if extras else ''}" + \
        (f" (TESSERA_GEMM_ISA={FORCED})" if FORCED else "")


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and its cores, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


_LINK_ROUNDS = 20_000
_LINK_SPIN = 1 << 22
"""Pause rounds one side waits for the other before giving up (a core taken)."""


def _link_kernels():
    """(ping, pong): the two sides of a cache-line round trip, jitted on first use."""
    from numba import njit

    from runtime.atomics import cpu_relax, fetch_add, load_acquire

    @njit(nogil=True, cache=False)
    def ping(flag, rounds, spin):
        for i in range(rounds):
            fetch_add(flag, 0, 1)
            waited = 0
            while load_acquire(flag, 0) != 2 * i + 2:
                cpu_relax()
                waited += 1
                if waited > spin:
                    fetch_add(flag, 1, 1)  # tell the other side to stop
                    return False
        return True

    @njit(nogil=True, cache=False)
    def pong(flag, rounds, spin):
        for i in range(rounds):
            waited = 0
            while load_acquire(flag, 0) != 2 * i + 1:
                if load_acquire(flag, 1) != 0:
                    return
                cpu_relax()
                waited += 1
                if waited > spin:
                    return
            fetch_add(flag, 0, 1)

    return ping, pong


_links = None


def core_link_ns() -> float | None:
    """Round trip, in ns, of one cache line between two threads bound to
    the first two cores this process may use; None with one core, or when
    a side waited too long (a core taken). About 50-60 ns where the cores
    share an L3; 550-750 ns in the episodes when the host placed the two
    vCPUs on different sockets or CCDs, which slowed everything that reads
    data the other core wrote (issue 24): printed beside the figures so
    that such a round can be told apart. With a core kept busy (``--loaded``)
    it times that core's sharing too, not only where the cores are."""
    import threading

    import numpy as np

    global _links
    try:
        cpus = sorted(os.sched_getaffinity(0))[:2]
    except (AttributeError, OSError):
        return None
    if len(cpus) < 2:
        return None
    if _links is None:
        _links = _link_kernels()
        _links[0](np.array([1, 1], np.int64), 1, 0)  # compile both before timing
        _links[1](np.array([0, 1], np.int64), 1, 0)
    ping, pong = _links
    flag = np.zeros(2, np.int64)
    result = []

    def side(cpu, fn):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
        if fn is ping:
            start = time.perf_counter()
            done = ping(flag, _LINK_ROUNDS, _LINK_SPIN)
            result.append((time.perf_counter() - start) / _LINK_ROUNDS * 1e9 if done else None)
        else:
            pong(flag, _LINK_ROUNDS, _LINK_SPIN)

    threads = [threading.Thread(target=side, args=(cpu, fn)) for cpu, fn in zip(cpus, (ping, pong))]
    for thread in reversed(threads):
        thread.start()
    for thread in threads:
        thread.join()
    return result[0] if result else None

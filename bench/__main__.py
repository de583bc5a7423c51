"""Every figure of the performance issues (24, 57), one command:

    python -m bench all [--rounds 3] [--loaded] [--cores 2]     (from the repository root)
    python -m bench device small ... [--rounds 3] [--loaded] [--cores 2]

coldstart  bench_coldstart.py: a fresh install's first ``tessera run`` and a
           compiled ResNet-50's, warm, and where the seconds go
compile    bench_compile.py: ResNet-50 import to binary, per stage
device     bench_device.py: Run_sw against onnxruntime int8 QDQ (u8s8, s8s8)
           and compiler.backend and Run_th against onnxruntime fp32,
           ResNet-50 and MobileNetV2
small      bench_small.py: the small models (PP-LCNet, MobileNetV2 224 and
           96, SqueezeNet, ResNet-10 32x32) and the fixed cost of a call
           (identity, one Conv): compiler.backend and Run_th against
           onnxruntime fp32, Run_sw against its int8 QDQ u8s8
throughput bench_throughput.py: images/s with requests in flight (IE with 2
           requests, PutInput/GetResult, tessera-infer's pipeline over
           JPEG files) against onnxruntime's, MobileNetV2 and ResNet-50
Each prints its ratios against a reference measured in the same run,
min/median/max over --rounds, and the load average; at the end, how many
of the ratios met their targets at the median and in every round, and
each row that did not. --loaded runs them
while another process keeps one core busy (the issue's loaded figure).
--cores N runs them (and the busy process) on N CPUs of N different
physical cores, the issue's 2-core budget on a larger host: two SMT
siblings would share one core's vector units.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "coldstart": ["bench_coldstart.py"],
    "compile": ["bench_compile.py"],
    "device": ["bench_device.py", "--models", "resnet50,mobilenet_v2"],
    "small": ["bench_small.py"],
    "throughput": ["bench_throughput.py"],
}


def physical_cpus(count: int) -> set[int]:
    """``count`` CPUs this process may use, no two of one physical core
    (sysfs's thread_siblings_list); SMT siblings only when there are too
    few cores."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen: list[int] = []
    taken: set[int] = set()
    for cpu in allowed:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text()
        except OSError:
            siblings = str(cpu)
        core = set()
        for part in siblings.strip().split(","):
            low, _, high = part.partition("-")
            core.update(range(int(low), int(high or low) + 1))
        if not core & taken:
            chosen.append(cpu)
        taken |= core
    chosen += [cpu for cpu in allowed if cpu not in chosen]  # too few cores: siblings after all
    if count > len(chosen):
        raise SystemExit(f"--cores {count}: this process may use {len(allowed)} CPUs")
    return set(chosen[:count])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="+", choices=["all", *BENCHES])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loaded", action="store_true", help="keep one core busy with another process meanwhile")
    parser.add_argument("--cores", type=int, help="run on this many CPUs, each of its own physical core")
    args = parser.parse_args()
    if args.cores:
        cpus = physical_cpus(args.cores)
        os.sched_setaffinity(0, cpus)  # inherited by every bench and the busy process
        print(f"pinned to CPUs {sorted(cpus)}", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    busy = None
    if args.loaded:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
    from bench.timing import host
    print(f"host: {host()}", flush=True)
    failed: list[str] = []
    verdicts: list[tuple[str, str, bool, bool]] = []
    try:
        for name in (list(BENCHES) if "all" in args.which else dict.fromkeys(args.which)):
            script = HERE / BENCHES[name][0]
            if not script.exists():
                print(f"== {name}: {script.name} is missing", flush=True)
                failed.append(name)
                continue
            print(f"== {name}{' (one core busy)' if busy else ''}: {' '.join(BENCHES[name])} --rounds {args.rounds}",
                  flush=True)
            child = subprocess.Popen([sys.executable, *BENCHES[name], "--rounds", str(args.rounds)], cwd=HERE,
                                     env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
            for line in child.stdout:
                print(line, end="", flush=True)
                verdict = judge(line, busy is not None)
                if verdict is not None:
                    verdicts.append((name, *verdict))
            if child.wait():
                failed.append(name)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    summarise(verdicts)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


RATIOS = re.compile(r"\s(\d+\.\d+)/(\d+\.\d+)/(\d+\.\d+)\s")
TARGET = re.compile(r"target ([<>]=) (\d+(?:\.\d+)?)( \(quiet\), (\d+(?:\.\d+)?) \(one core busy\))?")


def judge(line: str, loaded: bool) -> tuple[str, bool, bool] | None:
    """A result row's (its model and measure, whether its median ratio
    meets its target, whether its worst round does), or None for a line
    that is not a ratio with a target. A row with a quiet and a busy target
    is judged by the one of this run (``loaded``)."""
    ratios, target = RATIOS.search(line), TARGET.search(line)
    if ratios is None or target is None:
        return None
    sense, bound = target.group(1), float(target.group(4) if loaded and target.group(4) else target.group(2))
    low, median, high = (float(v) for v in ratios.groups())
    words = line[:ratios.start()].split()
    while words and re.fullmatch(r"\d+(\.\d+)?", words[-1]):  # the row's own figures
        words.pop()
    row = f"{' '.join(words)}: {low:g}/{median:g}/{high:g}, target {sense} {bound:g}"
    if sense == "<=":
        return row, median <= bound, high <= bound
    return row, median >= bound, low >= bound


def summarise(verdicts: list[tuple[str, str, bool, bool]]) -> None:
    """How many ratio targets held on this host, at the median and in every
    round, and which rows missed (the issue's figures are judged at the
    median; a row's worst round shows what a noisy minute costs)."""
    if not verdicts:
        return
    held = sum(v[2] for v in verdicts)
    every = sum(v[3] for v in verdicts)
    print(f"== summary: {held} of {len(verdicts)} ratio targets met at the median, {every} in every round")
    for bench, row, at_median, always in verdicts:
        if not always:
            print(f"   {bench}: {row}: {'met at the median, not in every round' if at_median else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())

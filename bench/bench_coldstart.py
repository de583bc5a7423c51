"""Cold start (issue 24 item 1): how long a fresh install's first ``tessera
run`` takes, and where the seconds go.

Each scenario runs the job in a new process with a fresh, empty kernel cache
folder (TESSERA_NUMBA_CACHE_DIR):
  shipped  the kernels a wheel ships (runtime/_jitcache, filled by
           ``python -m compiler.warmup`` while ``pip install .`` builds it) are
           copied in on first import: what a fresh install sees
  warm     the same job again on the cache the shipped run left
  jit      no shipped kernels: every kernel compiles (--jit; minutes)
Jobs: ``tessera run`` (the README's main job) and ``tessera run model.bin
--input x.npy`` for a compiled ResNet-50 (--no-resnet50 skips it). Prints
per run: seconds to the result, import, kernel compilation (Numba, top-level
compiles only, and how many), the compile stage (calibration included) and
the first run; min/median/max over --rounds; the machine's load average.

    python bench/bench_coldstart.py [--rounds 3] [--jit] [--shipped DIR]

--shipped: a folder that already holds shipped kernels (an installed wheel's
runtime/_jitcache); without it the bench fills one first and reports how
long that took (what ``pip install .`` spends on it).

    python bench/bench_coldstart.py --readme [--wheel]

--readme: the README's first command as a new user runs it (issue 52 item
1): a clean clone of this checkout's HEAD, a fresh venv and a fresh HOME
(so pip's cache is empty: downloads included) in a temporary folder, then
``python -m pip install .`` and ``tessera run``, each timed, with the split
of the run (import, compile stage, kernel compilation and how many
signatures, first run) and the total from the start of the install to the
printed result. --wheel then builds a wheel once (``pip wheel .`` in that
venv), installs it into a second fresh venv and HOME, and times ``tessera
run`` and ``tessera run resnet50.bin --input`` there (item 2).
"""
from __future__ import annotations

from timing import THREADS  # first: sets the thread counts
# isort: split

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time
start = time.perf_counter()
from numba.core import event
compiles = {"seconds": 0.0, "count": 0, "depth": 0, "began": 0.0}
class Compiles(event.Listener):
    def on_start(self, ev):
        if compiles["depth"] == 0:
            compiles["began"] = time.perf_counter()
        compiles["depth"] += 1
    def on_end(self, ev):
        compiles["depth"] -= 1
        compiles["count"] += 1
        if compiles["depth"] == 0:
            compiles["seconds"] += time.perf_counter() - compiles["began"]
event.register("numba:compile", Compiles())
from compiler.cli import main
imported = time.perf_counter() - start
import contextlib, io
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
total = time.perf_counter() - start
text = out.getvalue()
def after(marker):
    for line in text.splitlines():
        if marker in line:
            return float(line.split(marker)[1].split()[0])
    return None
print(json.dumps({"code": code, "total": total, "import": imported, "jit": compiles["seconds"],
                  "kernels": compiles["count"], "compile": after("compiled in "),
                  "first_run_ms": after("(first run "), "output": text[-600:]}))
"""


def run_job(argv: list[str], cache: Path, shipped: Path | None) -> dict:
    """One job in a new process on kernel cache folder ``cache``; the wall
    time includes the interpreter's start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(TESSERA_NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT),
               TESSERA_NUMBA_SHIPPED=str(shipped) if shipped else str(cache / "none"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"]:
        raise SystemExit(f"tessera {' '.join(argv)} exited {result['code']}:\n{result['output']}")
    result["wall"] = wall
    return result


def fill_shipped(folder: Path) -> float:
    """What ``pip install .`` does while it builds the wheel; its seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(TESSERA_NUMBA_CACHE_DIR=str(folder), PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compiler.warmup"], env=env, check=True)
    return time.perf_counter() - start


def line(name: str, runs: list[dict]) -> str:
    def spread(key, scale=1.0, fmt="{:.1f}"):
        values = sorted(r[key] * scale for r in runs if r[key] is not None)
        if not values:
            return "-"
        return "/".join(fmt.format(v) for v in (values[0], statistics.median(values), values[-1]))
    return (f"{name:52s} {spread('wall'):>16s} {spread('import'):>14s} {spread('jit'):>16s} "
            f"{spread('kernels', fmt='{:.0f}'):>11s} {spread('compile'):>15s} "
            f"{spread('first_run_ms', 1e-3, '{:.2f}'):>16s}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit", action="store_true", help="also the run with no shipped kernels (slow)")
    parser.add_argument("--shipped", type=Path, help="a folder of shipped kernels (default: fill one first)")
    parser.add_argument("--no-resnet50", action="store_true", help="only the README's main job")
    parser.add_argument("--readme", action="store_true", help="the README's first command on a clean clone, a fresh "
                                                               "venv and HOME (see above)")
    parser.add_argument("--wheel", action="store_true", help="with --readme: then a wheel built once, installed into "
                                                              "another fresh venv")
    args = parser.parse_args()
    if args.readme:
        return readme(args.wheel)
    with tempfile.TemporaryDirectory(prefix="tessera-coldstart-") as scratch:
        scratch = Path(scratch)
        shipped = args.shipped
        if shipped is None:
            shipped = scratch / "shipped"
            print(f"filling the shipped kernels (what pip install . does): {fill_shipped(shipped):.1f} s", flush=True)
        jobs = {"tessera run": ["run"]}
        if not args.no_resnet50:
            binary, data = scratch / "resnet50.bin", scratch / "x.npy"
            run_job(["compile", "zoo:resnet50", "--count", "2", "-o", str(binary)], scratch / "setup", shipped)
            jobs["tessera run resnet50.bin --input"] = ["run", str(binary), "--input",
                                                        f"{_write_input(binary, data)}={data}"]
        print(f"threads {THREADS}, load average {os.getloadavg()[0]:.2f}; min/median/max over {args.rounds} rounds")
        print(f"{'job / cache':52s} {'seconds':>16s} {'import':>14s} {'kernel JIT s':>16s} {'compiles':>11s} "
              f"{'compile stage':>15s} {'first run s':>16s}")
        for name, argv in jobs.items():
            scenarios = {"shipped (fresh install)": [], "warm": []} | ({"jit (no shipped kernels)": []}
                                                                       if args.jit else {})
            for r in range(args.rounds):
                cache = scratch / f"cache-{name.split()[-1]}-{r}"
                scenarios["shipped (fresh install)"].append(run_job(argv, cache, shipped))
                scenarios["warm"].append(run_job(argv, cache, shipped))
                if args.jit and r == 0:  # minutes each: one round
                    scenarios["jit (no shipped kernels)"].append(run_job(argv, scratch / f"jit-{r}", None))
            for scenario, runs in scenarios.items():
                print(line(f"{name}: {scenario}", runs), flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


def _write_input(binary: Path, data: Path) -> str:
    """Save a random input for the binary; its name."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from runtime.binary import read_binary

    spec = read_binary(binary).inputs[0]
    np.save(data, np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32))
    return spec.name


def _fresh(scratch: Path, name: str) -> tuple[Path, dict]:
    """A fresh venv and HOME under ``scratch``: the venv's python and the
    environment a new user's shell would give (no PYTHONPATH, no NUMBA_,
    no TESSERA_ settings, an empty pip cache)."""
    home = scratch / f"home-{name}"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(scratch / f"venv-{name}")], check=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "TESSERA_", "PIP_", "XDG_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=f"{scratch / f'venv-{name}' / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return scratch / f"venv-{name}" / "bin" / "python", env


def _timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=str(cwd), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def _probe(python: Path, env: dict, cwd: Path, argv: list[str]) -> dict:
    """``tessera ARGV`` through :data:`PROBE` in the venv: its split."""
    start = time.perf_counter()
    done = subprocess.run([str(python), "-c", PROBE, *argv], env=env, cwd=str(cwd), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"tessera {' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall=wall, stderr=done.stderr.strip())
    return result


def _say(name: str, r: dict) -> None:
    first = r["first_run_ms"] / 1e3 if r["first_run_ms"] is not None else float("nan")
    print(f"  {name}: {r['wall']:.1f} s (import {r['import']:.1f} s, compile stage {r['compile'] or 0:.1f} s, "
          f"first run {first:.1f} s; kernel compilation {r['jit']:.1f} s, {r['kernels']} signatures)", flush=True)
    for line in r["stderr"].splitlines():
        print(f"    | {line}")


def readme(wheel: bool) -> int:
    """The README's first command as a new user runs it; then the wheel path."""
    print(f"host: {_cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tessera-readme-") as scratch:
        scratch = Path(scratch)
        clone = scratch / "tessera"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        python, env = _fresh(scratch, "user")
        install, _ = _timed([str(python), "-m", "pip", "install", "."], env, clone)
        shipped = sum(1 for _ in python.parent.parent.glob("lib/python*/site-packages/runtime/_jitcache/**/*.nbi"))
        print(f"pip install . : {install:.1f} s (kernel signatures' index files shipped in the wheel: {shipped})",
              flush=True)
        run = _probe(python, env, scratch, ["run"])
        _say("tessera run (first)", run)
        print(f"README's first command, install to printed result: {install + run['wall']:.1f} s", flush=True)
        _say("tessera run (second)", _probe(python, env, scratch, ["run"]))
        if not wheel:
            return 0
        built, _ = _timed([str(python), "-m", "pip", "wheel", "--no-deps", ".", "-w", str(scratch / "wheels")], env,
                          clone)
        print(f"pip wheel . (once, on the build host): {built:.1f} s", flush=True)
        python2, env2 = _fresh(scratch, "device")
        (wheel_file,) = (scratch / "wheels").glob("tessera-*.whl")
        installed, _ = _timed([str(python2), "-m", "pip", "install", str(wheel_file)], env2, scratch)
        print(f"pip install tessera-*.whl (a fresh venv and HOME): {installed:.1f} s", flush=True)
        _say("tessera run (from the wheel)", _probe(python2, env2, scratch, ["run"]))
        binary, data = scratch / "resnet50.bin", scratch / "x.npy"
        _timed([str(python2), "-m", "compiler.cli", "compile", "zoo:resnet50", "--count", "2", "-o", str(binary)],
               env2, scratch)
        name = _write_input(binary, data)
        _say("tessera run resnet50.bin --input (from the wheel)",
             _probe(python2, env2, scratch, ["run", str(binary), "--input", f"{name}={data}"]))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())

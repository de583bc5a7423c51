"""How the simulator scales with host threads (issue 18): images per second
of ResNet-50 on the simulated device, for batch mode at numclus 1, 2 and 4
(each cluster its own image) and split mode at numclus 4 (one image, each
layer divided over the clusters), with the runtime's thread pool at 1, 2, 4,
... threads up to this host's cores (``TESSERA_NUM_THREADS``, each count in
a fresh process). Ratios are against 1 thread in the same run; every output
is checked against the numclus=1 binary's, bit for bit.

    PYTHONPATH=. python bench/bench_sim_threads.py [--model resnet50] [--runs 5] [--threads 1,2]

The streams of the clusters run concurrently where they are lanes
(runtime/sim/lanes.py) and there are at least as many lanes as threads;
otherwise each large CONV runs over every thread.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

CONFIGS = [("batch", 1), ("batch", 2), ("batch", 4), ("split", 4)]


def _thread_counts() -> list[int]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts, t = [], 1
    while t < cores:
        counts.append(t)
        t *= 2
    return counts + [cores]


def worker(folder: str, runs: int) -> None:
    """In a process whose thread count is set: time every binary; print JSON."""
    sys.path.insert(0, os.path.dirname(__file__))
    from timing import median_ms

    import numpy as np

    from runtime.binary import read_binary
    from runtime.engine import Engine
    with open(os.path.join(folder, "images.json")) as f:
        names = json.load(f)
    images = np.load(os.path.join(folder, "images.npy"))
    reference = Engine(read_binary(os.path.join(folder, "batch1.bin")))
    out = {}
    for mode, clusters in CONFIGS:
        engine = Engine(read_binary(os.path.join(folder, f"{mode}{clusters}.bin")))
        count = clusters if mode == "batch" else 1
        feeds = [{names["input"]: images[i]} for i in range(count)]
        run = (lambda: engine.run(feeds[0])) if count == 1 else (lambda: engine.run_batch(feeds))
        got = [run()] if count == 1 else run()
        same = all(np.array_equal(g[k], reference.run(f)[k]) for g, f in zip(got, feeds) for k in g)
        out[f"{mode}{clusters}"] = {"ms": median_ms(run, runs), "images": count, "same": same,
                                    "lanes": max(max(s.lanes) for s in engine.device.simulators)}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", choices=["resnet50", "mobilenet_v2"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default=None, help="comma-separated thread counts (default 1, 2, 4, ... cores)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.runs)
        return
    import numpy as np
    import onnx

    from compiler.compile import compile_model
    from compiler.zoo import load_light_model, mobilenet_v2
    from compiler.zoo.images import image_crops
    folder = tempfile.mkdtemp()
    source = os.path.join(folder, f"{args.model}.onnx")
    onnx.save(load_light_model("resnet50") if args.model == "resnet50" else mobilenet_v2(), source)
    calibration = image_crops(8, size=224, seed=1)
    images = image_crops(4, size=224, seed=2)
    name = None
    for mode, clusters in [("batch", 1), *CONFIGS]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = compile_model(source, image="224x224x3", samples=calibration,
                                     outfile=os.path.join(folder, f"{mode}{clusters}.bin"), numclus=clusters,
                                     split=mode == "split", strip_reference=True)
        name = compiled.inputs[0].name
    np.save(os.path.join(folder, "images.npy"), np.stack(images))
    with open(os.path.join(folder, "images.json"), "w") as f:
        json.dump({"input": name}, f)
    counts = [int(t) for t in args.threads.split(",")] if args.threads else _thread_counts()
    results = {}
    for threads in counts:
        env = dict(os.environ, TESSERA_NUM_THREADS=str(threads), BENCH_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run([sys.executable, __file__, "--worker", folder, "--runs", str(args.runs)], env=env,
                              capture_output=True, text=True, check=True)
        results[threads] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{args.model}: images per second of the simulated device (ratio against 1 thread)")
    print(f"{'config':<10}{'images':>7}{'lanes':>6}" + "".join(f"{f'{t} thr':>16}" for t in counts) + "  outputs")
    for mode, clusters in CONFIGS:
        key = f"{mode}{clusters}"
        first = results[counts[0]][key]
        cells = ""
        for t in counts:
            r = results[t][key]
            rate = r["images"] / r["ms"] * 1e3
            cells += f"{rate:>9.2f} ({first['ms'] / r['ms']:.2f}x)"
        same = all(results[t][key]["same"] for t in counts)
        print(f"{key:<10}{first['images']:>7}{results[counts[-1]][key]['lanes']:>6}{cells}  "
              f"{'bit-identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()

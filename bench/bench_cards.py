"""Cards and clusters on ResNet-50 (issue 18): modelled hwtime and the
simulator's wall time for numclus in {1, 2, 4} x numcard in {1, 2}, in
batch mode (each cluster its own image) and split mode (each layer divided
over the clusters), and for one cluster taking 4 images a run with and
without mvbatch; every ratio against numclus=1 numcard=1 measured in the
same run, every configuration's outputs checked against it (split: bit for
bit; batch: each image against its single run).

    PYTHONPATH=. python bench/bench_cards.py [--model resnet50] [--runs 5]

The table in docs/simulator.md ("Cards and clusters") comes from this script.
"""
from __future__ import annotations

from timing import median_ms  # first: sets the thread counts
# isort: split

import argparse
import os
import tempfile
import warnings

import numpy as np
import onnx

from compiler.compile import compile_model
from compiler.zoo import load_light_model, mobilenet_v2
from compiler.zoo.images import image_crops
from runtime.binary import read_binary
from runtime.engine import Engine

MODELS = {"resnet50": lambda: load_light_model("resnet50"), "mobilenet_v2": mobilenet_v2}
GRID = [(mode, cards, clusters, 1, False) for mode in ("split", "batch") for cards in (1, 2) for clusters in (1, 2, 4)]
GRID += [("batch", 1, 1, 4, False), ("batch", 1, 1, 4, True)]
"""(mode, numcard, numclus, imgs_per_cluster, mvbatch)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    source = os.path.join(folder, f"{args.model}.onnx")
    onnx.save(MODELS[args.model](), source)
    calibration = image_crops(8, size=224, seed=1)
    images = image_crops(8, size=224, seed=2)
    print(f"{'mode':<10}{'cards':>6}{'clus':>6}{'images':>8}{'hwtime ms':>11}{'x 1x1':>8}{'img/s (model)':>15}"
          f"{'wall ms':>9}{'x 1x1':>8}  outputs")
    base = None
    for mode, cards, clusters, per_cluster, mvbatch in GRID:
        if mode == "batch" and cards * clusters * per_cluster == 1:
            continue  # the same binary as split 1x1
        path = os.path.join(folder, f"{mode}{cards}{clusters}{per_cluster}{mvbatch:d}.bin")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = compile_model(source, image="224x224x3", samples=calibration, outfile=path, numcard=cards,
                                     numclus=clusters, split=mode == "split", imgs_per_cluster=per_cluster,
                                     mvbatch=mvbatch, strip_reference=True)
        engine = Engine(read_binary(path))
        name = compiled.inputs[0].name
        batch = [{name: images[i % len(images)]} for i in range(compiled.batch)]
        run = (lambda: engine.run(batch[0])) if compiled.batch == 1 else (lambda: engine.run_batch(batch))
        outputs = run() if compiled.batch == 1 else None
        wall = median_ms(run, args.runs)
        hwtime = engine.device.hwtime_ms
        if base is None:
            base = (hwtime, wall, engine)
            check = "reference"
        elif compiled.batch == 1:
            want = base[2].run(batch[0])
            check = "bit-identical" if all(np.array_equal(outputs[k], want[k]) for k in want) else "DIFFERENT"
        else:
            got = engine.run_batch(batch)
            same = all(np.array_equal(g[k], base[2].run(f)[k]) for g, f in zip(got, batch) for k in g)
            check = "each = its single run" if same else "DIFFERENT"
        label = mode + (f" x{per_cluster}" if per_cluster > 1 else "") + (" mv" if mvbatch else "")
        print(f"{label:<10}{cards:>6}{clusters:>6}{compiled.batch:>8}{hwtime:>11.2f}{hwtime / base[0]:>8.2f}"
              f"{compiled.batch / hwtime * 1e3:>15.1f}{wall:>9.0f}{wall / base[1]:>8.2f}  {check}", flush=True)


if __name__ == "__main__":
    main()

"""The fuzz campaigns (issue 23), each case in a worker process; prints the
counts and exits 1 on a crash or hang.

    python bench/fuzz.py onnx   --cases 10000  [--seed 0] [--workers 2]
    python bench/fuzz.py binary --cases 100000 [--seed 0] [--workers 2]
    python bench/fuzz.py files  --cases 100000 [--seed 0] [--workers 2]
    python bench/fuzz.py CAMPAIGN --replay FILE...   (kept inputs)
    python bench/fuzz.py CAMPAIGN --case N           (one case here, with its traceback)

onnx: small real models (a ResNet, a transformer block, MTCNN's P-Net, an
If, pooling followed by the Slice and Shape -> Reshape chains exporters
write, an opset-6 model, a local function, one-node models of ops with
attributes) mutated with their structure in mind (attributes to boundary
values and wrong types, every integer attribute an op declares to extreme
values and mismatched lengths, initializer dims, bytes and external data,
declared shapes, wiring, op types, opset), each through import (with
onnx's shape inference, in its worker process, as a cross-check),
optimisation and a CPU run.

binary: a small compiled ResNet's binary mutated with every checksum
recomputed (section CRCs, the per-stream CRCs in META), instruction fields
included, through FWDNXT Init, Run_sw and Run_th.

files: truncated, mutated and random files through every loader of a file
(the ONNX loader, the binary reader behind FWDNXT, kp and IENetwork, the
encodings reader, the calibration and Simulator sample readers, and
tessera-infer's image, labels, classes and FC-weight readers).

The cases are tests/helpers/fuzz_<campaign>.py's, the runner
tests/helpers/fuzzing.py's; crashing, hanging and unclean inputs are kept
under bench/fuzz_out/<campaign>/ (copy them to tests/data/fuzz_regressions/).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.fuzzing import main  # noqa: E402

CAMPAIGNS = {"onnx": (1000, 90.0), "binary": (2000, 20.0), "files": (2000, 30.0)}
"""campaign -> (default cases, seconds a case may take before it is a hang;
onnx's is above compiler.frontend.onnx_isolated.TIMEOUT_S, so that a hang in
onnx's C++ shows as the named error that timeout gives)"""

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CAMPAIGNS:
        sys.exit(f"usage: python bench/fuzz.py {{{','.join(CAMPAIGNS)}}} [--cases N] [--seed S] ...  (--help)\n\n"
                 + __doc__.split("\n\n")[1])
    name = sys.argv[1]
    cases, timeout = CAMPAIGNS[name]
    sys.exit(main(f"tests.helpers.fuzz_{name}", name, f"{name} fuzz campaign", cases=cases, timeout=timeout,
                  argv=sys.argv[2:]))

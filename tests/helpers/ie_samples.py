"""OpenVINO Python samples of 2018 R3 to 2020 as users ran them, for
tests/runtime/test_ie_samples.py: each script follows its release's sample
call for call (the same classes, methods, arguments and printed layout),
only its Inference Engine import line changed to Tessera's and its model an
ONNX file. They read images with ``cv2.imread``/``cv2.resize``; OpenCV is
not installed here, so CV2 is a ``cv2.py`` written beside the scripts that
does those two calls with Pillow (BGR, as OpenCV returns them). Each script
is run as a subprocess from its own folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tests.helpers.examples import run_scripts

CV2 = '''"""cv2.imread and cv2.resize over Pillow (BGR uint8 HWC, as OpenCV gives)."""
import numpy as np
from PIL import Image


def imread(path):
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1])


def resize(image, size):
    rgb = Image.fromarray(np.ascontiguousarray(image[:, :, ::-1]))
    return np.ascontiguousarray(np.asarray(rgb.resize(tuple(size), Image.BILINEAR))[:, :, ::-1])
'''

HEADER = '''#!/usr/bin/env python
from __future__ import print_function
import sys
import os
from argparse import ArgumentParser, SUPPRESS
import cv2
import numpy as np
import logging as log
from time import time
'''

TOP_TABLE = '''
    classid_str = "classid"
    probability_str = "probability"
    for i, probs in enumerate(res):
        probs = np.squeeze(probs)
        top_ind = np.argsort(probs)[-args.number_top:][::-1]
        print("Image {}\\n".format(args.input[i]))
        print(classid_str, probability_str)
        print("{} {}".format('-' * len(classid_str), '-' * len(probability_str)))
        for id in top_ind:
            det_label = labels_map[id] if labels_map else "{}".format(id)
            label_length = len(det_label)
            space_num_before = (len(classid_str) - label_length) // 2
            space_num_after = len(classid_str) - (space_num_before + label_length) + 2
            space_num_before_prob = (len(probability_str) - len(str(probs[id]))) // 2
            print("{}{}{}{}{:.7f}".format(' ' * space_num_before, det_label, ' ' * space_num_after,
                                          ' ' * space_num_before_prob, probs[id]))
        print("\\n")
'''

ARGS_2020 = '''

def build_argparser():
    parser = ArgumentParser(add_help=False)
    args = parser.add_argument_group('Options')
    args.add_argument('-h', '--help', action='help', default=SUPPRESS, help='Show this help message and exit.')
    args.add_argument("-m", "--model", help="Required. Path to the model.", required=True, type=str)
    args.add_argument("-i", "--input", help="Required. Image files.", required=True, type=str, nargs="+")
    args.add_argument("-l", "--cpu_extension", help="Optional. CPU extension library.", type=str, default=None)
    args.add_argument("-d", "--device", help="Optional. Target device (default CPU).", default="CPU", type=str)
    args.add_argument("--labels", help="Optional. Labels mapping file.", default=None, type=str)
    args.add_argument("-nt", "--number_top", help="Optional. Number of top results.", default=10, type=int)
    return parser
'''

LABELS = '''
    if args.labels:
        with open(args.labels, 'r') as f:
            labels_map = [x.split(sep=' ', maxsplit=1)[-1].strip() for x in f]
    else:
        labels_map = None
'''

READ_IMAGES = '''
    n, c, h, w = {shape}
    images = np.ndarray(shape=(n, c, h, w))
    for i in range(n):
        image = cv2.imread(args.input[i])
        if image.shape[:-1] != (h, w):
            log.warning("Image {{}} is resized from {{}} to {{}}".format(args.input[i], image.shape[:-1], (h, w)))
            image = cv2.resize(image, (w, h))
        image = image.transpose((2, 0, 1))  # HWC to CHW
        images[i] = image
    log.info("Batch size is {{}}".format(n))
'''

# 2019 R2 to 2020.1: IECore with the IENetwork constructor, query_network on CPU, net.inputs[...].shape
CLASSIFICATION_2020 = HEADER + '''from runtime.inference_engine import IENetwork, IECore
''' + ARGS_2020 + '''

def main():
    log.basicConfig(format="[ %(levelname)s ] %(message)s", level=log.INFO, stream=sys.stdout)
    args = build_argparser().parse_args()
    model_xml = args.model
    model_bin = os.path.splitext(model_xml)[0] + ".bin"

    log.info("Creating Inference Engine")
    ie = IECore()
    if args.cpu_extension and 'CPU' in args.device:
        ie.add_extension(args.cpu_extension, "CPU")
    log.info("Loading network files:\\n\\t{}\\n\\t{}".format(model_xml, model_bin))
    net = IENetwork(model=model_xml, weights=model_bin)

    if "CPU" in args.device:
        supported_layers = ie.query_network(net, "CPU")
        not_supported_layers = [l for l in net.layers.keys() if l not in supported_layers]
        if len(not_supported_layers) != 0:
            log.error("Layers not supported by {}: {}".format(args.device, ', '.join(not_supported_layers)))
            sys.exit(1)

    assert len(net.inputs.keys()) == 1, "Sample supports only single input topologies"
    assert len(net.outputs) == 1, "Sample supports only single output topologies"

    log.info("Preparing input blobs")
    input_blob = next(iter(net.inputs))
    out_blob = next(iter(net.outputs))
    net.batch_size = len(args.input)
''' + READ_IMAGES.format(shape="net.inputs[input_blob].shape") + '''
    log.info("Loading model to the plugin")
    exec_net = ie.load_network(network=net, device_name=args.device)

    log.info("Starting inference in synchronous mode")
    res = exec_net.infer(inputs={input_blob: images})

    log.info("Processing output blob")
    res = res[out_blob]
    log.info("Top {} results: ".format(args.number_top))
''' + LABELS + TOP_TABLE + '''

if __name__ == '__main__':
    sys.exit(main() or 0)
'''

# 2020.2 to 2020.4: read_network, input_info, a completion callback that restarts the request 10 times
CLASSIFICATION_ASYNC_2020 = HEADER + '''from runtime.inference_engine import IECore
import threading


class InferReqWrap:
    def __init__(self, request, id, num_iter):
        self.id = id
        self.request = request
        self.num_iter = num_iter
        self.cur_iter = 0
        self.cv = threading.Condition()
        self.request.set_completion_callback(self.callback, self.id)

    def callback(self, statusCode, userdata):
        if userdata != self.id:
            log.error("Request ID {} does not correspond to user data {}".format(self.id, userdata))
        elif statusCode != 0:
            log.error("Request {} failed with status code {}".format(self.id, statusCode))
        self.cur_iter += 1
        log.info("Completed {} Async request execution".format(self.cur_iter))
        if self.cur_iter < self.num_iter:
            self.request.async_infer(self.input)
        else:
            self.cv.acquire()
            self.cv.notify()
            self.cv.release()

    def execute(self, mode, input_data):
        if mode == "async":
            log.info("Start inference ({} Asynchronous executions)".format(self.num_iter))
            self.input = input_data
            self.request.async_infer(input_data)
            self.cv.acquire()
            self.cv.wait()
            self.cv.release()
        else:
            log.error("wrong inference mode")
            sys.exit(1)
''' + ARGS_2020 + '''

def main():
    log.basicConfig(format="[ %(levelname)s ] %(message)s", level=log.INFO, stream=sys.stdout)
    args = build_argparser().parse_args()

    log.info("Creating Inference Engine")
    ie = IECore()
    if args.cpu_extension and 'CPU' in args.device:
        ie.add_extension(args.cpu_extension, "CPU")

    model = args.model
    model_bin = None
    model_name, model_ext = os.path.splitext(model)
    log.info(f"Loading network files:\\n\\t{model}")
    if model_ext == ".xml":
        model_bin = model_name + ".bin"
    net = ie.read_network(model=model, weights=model_bin)

    assert len(net.input_info.keys()) == 1, "Sample supports only single input topologies"
    assert len(net.outputs) == 1, "Sample supports only single output topologies"

    log.info("Preparing input blobs")
    input_blob = next(iter(net.input_info))
    out_blob = next(iter(net.outputs))
    net.batch_size = len(args.input)
''' + READ_IMAGES.format(shape="net.input_info[input_blob].input_data.shape") + '''
    log.info("Loading model to the plugin")
    exec_net = ie.load_network(network=net, device_name=args.device)

    request_id = 0
    infer_request = exec_net.requests[request_id]
    num_iter = 10
    request_wrap = InferReqWrap(infer_request, request_id, num_iter)
    request_wrap.execute("async", {input_blob: images})

    log.info("Processing output blob")
    res = infer_request.output_blobs[out_blob].buffer
    log.info("Top {} results: ".format(args.number_top))
''' + LABELS + TOP_TABLE + '''

if __name__ == '__main__':
    sys.exit(main() or 0)
'''

ARGS_2018 = '''

def build_argparser():
    parser = ArgumentParser()
    parser.add_argument("-m", "--model", help="Path to the model.", required=True, type=str)
    parser.add_argument("-i", "--input", help="Image files", required=True, type=str, nargs="+")
    parser.add_argument("-l", "--cpu_extension", help="CPU extension library.", type=str, default=None)
    parser.add_argument("-pp", "--plugin_dir", help="Path to a plugin folder", type=str, default=None)
    parser.add_argument("-d", "--device", help="Target device (CPU by default)", default="CPU", type=str)
    parser.add_argument("--labels", help="Labels mapping file", default=None, type=str)
    parser.add_argument("-nt", "--number_top", help="Number of top results", default=10, type=int)
    parser.add_argument("-ni", "--number_iter", help="Number of inference iterations", default=1, type=int)
    parser.add_argument("-pc", "--perf_counts", help="Report performance counters", default=False,
                        action="store_true")
    return parser
'''

PLUGIN_2018 = '''
def main():
    log.basicConfig(format="[ %(levelname)s ] %(message)s", level=log.INFO, stream=sys.stdout)
    args = build_argparser().parse_args()
    model_xml = args.model
    model_bin = os.path.splitext(model_xml)[0] + ".bin"

    plugin = IEPlugin(device=args.device, plugin_dirs=args.plugin_dir)
    if args.cpu_extension and 'CPU' in args.device:
        plugin.add_cpu_extension(args.cpu_extension)
    log.info("Loading network files:\\n\\t{{}}\\n\\t{{}}".format(model_xml, model_bin))
    net = {read}

    if plugin.device == "CPU":
        supported_layers = plugin.get_supported_layers(net)
        not_supported_layers = [l for l in net.layers.keys() if l not in supported_layers]
        if len(not_supported_layers) != 0:
            log.error("Layers not supported by {{}}: {{}}".format(plugin.device, ', '.join(not_supported_layers)))
            sys.exit(1)

    assert len(net.inputs.keys()) == 1, "Sample supports only single input topologies"
    assert len(net.outputs) == 1, "Sample supports only single output topologies"

    log.info("Preparing input blobs")
    input_blob = next(iter(net.inputs))
    out_blob = next(iter(net.outputs))
    net.batch_size = len(args.input)
'''

PERF_2018 = '''
    if args.perf_counts:
        perf_counts = {request}.get_perf_counts()
        log.info("Performance counters:")
        print("{{:<70}} {{:<15}} {{:<15}} {{:<15}} {{:<10}}".format('name', 'layer_type', 'exet_type', 'status',
                                                            'real_time, us'))
        for layer, stats in perf_counts.items():
            print("{{:<70}} {{:<15}} {{:<15}} {{:<15}} {{:<10}}".format(layer, stats['layer_type'], stats['exec_type'],
                                                                stats['status'], stats['real_time']))
'''

# 2018 R3/R4: IEPlugin, IENetwork.from_ir, net.inputs[input_blob] is the shape list itself
CLASSIFICATION_2018 = HEADER + '''from runtime.inference_engine import IENetwork, IEPlugin
''' + ARGS_2018 + PLUGIN_2018.format(read="IENetwork.from_ir(model=model_xml, weights=model_bin)") \
    + READ_IMAGES.format(shape="net.inputs[input_blob]") + '''
    log.info("Loading model to the plugin")
    exec_net = plugin.load(network=net)
    del net

    log.info("Starting inference ({} iterations)".format(args.number_iter))
    infer_time = []
    for i in range(args.number_iter):
        t0 = time()
        res = exec_net.infer(inputs={input_blob: images})
        infer_time.append((time() - t0) * 1000)
    log.info("Average running time of one iteration: {} ms".format(np.average(np.asarray(infer_time))))
''' + PERF_2018.format(request="exec_net.requests[0]") + '''
    log.info("Processing output blob")
    res = res[out_blob]
    log.info("Top {} results: ".format(args.number_top))
''' + LABELS + '''
    for i, probs in enumerate(res):
        probs = np.squeeze(probs)
        top_ind = np.argsort(probs)[-args.number_top:][::-1]
        print("Image {}\\n".format(args.input[i]))
        for id in top_ind:
            det_label = labels_map[id] if labels_map else "#{}".format(id)
            print("{:.7f} label {}".format(probs[id], det_label))
        print("\\n")

    del exec_net
    del plugin


if __name__ == '__main__':
    sys.exit(main() or 0)
'''

# 2018 R5: the IENetwork constructor, net.inputs[...].shape, start_async and wait
CLASSIFICATION_ASYNC_2018 = HEADER + '''from runtime.inference_engine import IENetwork, IEPlugin
''' + ARGS_2018 + PLUGIN_2018.format(read="IENetwork(model=model_xml, weights=model_bin)") \
    + READ_IMAGES.format(shape="net.inputs[input_blob].shape") + '''
    log.info("Loading model to the plugin")
    exec_net = plugin.load(network=net)
    del net

    log.info("Starting inference ({} iterations)".format(args.number_iter))
    infer_time = []
    for i in range(args.number_iter):
        t0 = time()
        infer_request_handle = exec_net.start_async(request_id=0, inputs={input_blob: images})
        infer_request_handle.wait()
        infer_time.append((time() - t0) * 1000)
    log.info("Average running time of one iteration: {} ms".format(np.average(np.asarray(infer_time))))
''' + PERF_2018.format(request="infer_request_handle") + '''
    log.info("Processing output blob")
    res = infer_request_handle.outputs[out_blob]
    log.info("Top {} results: ".format(args.number_top))
''' + LABELS + '''
    for i, probs in enumerate(res):
        probs = np.squeeze(probs)
        top_ind = np.argsort(probs)[-args.number_top:][::-1]
        print("Image {}\\n".format(args.input[i]))
        for id in top_ind:
            det_label = labels_map[id] if labels_map else "#{}".format(id)
            print("{:.7f} {}".format(probs[id], det_label))
        print("\\n")

    del exec_net
    del plugin


if __name__ == '__main__':
    sys.exit(main() or 0)
'''

# 2018 R5 to 2019: the affinity-setting sample, every Convolution moved to the CPU as the spec's example does
HETERO_AFFINITY = HEADER + '''from runtime.inference_engine import IENetwork, IEPlugin


def build_argparser():
    parser = ArgumentParser(add_help=False)
    args = parser.add_argument_group('Options')
    args.add_argument('-h', '--help', action='help', default=SUPPRESS, help='Show this help message and exit.')
    args.add_argument("-m", "--model", help="Required. Path to the model.", required=True, type=str)
    args.add_argument("-i", "--input", help="Required. An image file.", required=True, type=str)
    args.add_argument("-l", "--cpu_extension", help="Optional. CPU extension library.", type=str, default=None)
    args.add_argument("-pp", "--plugin_dir", help="Optional. Path to a plugin folder", type=str, default=None)
    args.add_argument("-d", "--device", help="Optional. HETERO configuration, e.g. HETERO:FPGA,CPU",
                      default="HETERO:FPGA,CPU", type=str)
    args.add_argument("-nt", "--number_top", help="Optional. Number of top results", default=10, type=int)
    return parser


def main():
    log.basicConfig(format="[ %(levelname)s ] %(message)s", level=log.INFO, stream=sys.stdout)
    args = build_argparser().parse_args()
    assert args.device.split(':')[0] == "HETERO", "This sample supports only the HETERO plugin"
    model_xml = args.model
    model_bin = os.path.splitext(model_xml)[0] + ".bin"

    plugin = IEPlugin(device=args.device, plugin_dirs=args.plugin_dir)
    if args.cpu_extension and 'CPU' in args.device:
        plugin.add_cpu_extension(args.cpu_extension)
    net = IENetwork(model=model_xml, weights=model_bin)

    net_ops = set([l.type for l in net.layers.values()])
    if not any([op == "Convolution" for op in net_ops]):
        log.warning("The model has no Convolution layers to set an affinity for")

    plugin.set_config({"TARGET_FALLBACK": args.device.split(':')[1]})
    plugin.set_config({"HETERO_DUMP_GRAPH_DOT": "YES"})
    plugin.set_initial_affinity(net)
    print("initial affinities:", {l.name: l.affinity for l in net.layers.values()})

    for l in net.layers.values():
        if l.type == "Convolution":
            l.affinity = "CPU"

    assert len(net.inputs.keys()) == 1, "Sample supports only single input topologies"
    assert len(net.outputs) == 1, "Sample supports only single output topologies"
    input_blob = next(iter(net.inputs))
    out_blob = next(iter(net.outputs))
    n, c, h, w = net.inputs[input_blob].shape
    image = cv2.imread(args.input)
    image = cv2.resize(image, (w, h))
    image = image.transpose((2, 0, 1))
    image = image.reshape((n, c, h, w))
    exec_net = plugin.load(network=net)
    del net
    res = exec_net.infer(inputs={input_blob: image})
    top_ind = np.argsort(res[out_blob], axis=1)[0, -args.number_top:][::-1]
    for i in top_ind:
        log.info("%f #%d" % (res[out_blob][0, i], i))
    print("perf counts:", {name: (stats['layer_type'], stats['exec_type'], stats['status'])
                           for name, stats in exec_net.requests[0].get_perf_counts().items()})
    del exec_net
    del plugin


if __name__ == '__main__':
    sys.exit(main() or 0)
'''

# 2019 R2+: hello_query_device, every metric and configuration key of every device
HELLO_QUERY_DEVICE = '''import sys
from runtime.inference_engine import IECore


def param_to_string(metric):
    if isinstance(metric, (list, tuple)):
        return ", ".join([str(val) for val in metric])
    elif isinstance(metric, dict):
        return ", ".join(["{}: {}".format(k, v) for k, v in metric.items()])
    else:
        return str(metric)


def main():
    ie = IECore()
    print("Available devices:")
    for device in ie.available_devices:
        print("\\tDevice: {}".format(device))
        print("\\tMetrics:")
        for metric in ie.get_metric(device, "SUPPORTED_METRICS"):
            try:
                metric_val = ie.get_metric(device, metric)
                print("\\t\\t{}: {}".format(metric, param_to_string(metric_val)))
            except TypeError:
                print("\\t\\t{}: UNSUPPORTED TYPE".format(metric))
        print("\\n\\tDefault values for device configuration keys:")
        for cfg in ie.get_metric(device, "SUPPORTED_CONFIG_KEYS"):
            try:
                cfg_val = ie.get_config(device, cfg)
                print("\\t\\t{}: {}".format(cfg, param_to_string(cfg_val)))
            except TypeError:
                print("\\t\\t{}: UNSUPPORTED TYPE".format(cfg))
    versions = ie.get_versions("HETERO:FPGA,CPU")
    for name, version in versions.items():
        print("{}: {}.{} {} ({})".format(name, version.major, version.minor, version.build_number,
                                         version.description))


if __name__ == '__main__':
    sys.exit(main() or 0)
'''

SCRIPTS = {"classification_sample_2020.py": CLASSIFICATION_2020,
           "classification_sample_async_2020.py": CLASSIFICATION_ASYNC_2020,
           "classification_sample_2018.py": CLASSIFICATION_2018,
           "classification_sample_async_2018.py": CLASSIFICATION_ASYNC_2018,
           "affinity_setting_sample.py": HETERO_AFFINITY,
           "hello_query_device.py": HELLO_QUERY_DEVICE}


def write_samples(folder: Path) -> None:
    """The scripts and the Pillow cv2 beside them."""
    for name, text in {**SCRIPTS, "cv2.py": CV2}.items():
        (folder / name).write_text(text)


def cv2_module(folder: Path):
    """The cv2.py written by :func:`write_samples`, imported here (the test's reference reads images with it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ie_samples_cv2", folder / "cv2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preprocess(cv2, paths: Sequence[str], h: int, w: int) -> np.ndarray:
    """What the samples feed: BGR pixels 0-255, resized when needed, NCHW float64."""
    images = []
    for path in paths:
        image = cv2.imread(path)
        if image.shape[:-1] != (h, w):
            image = cv2.resize(image, (w, h))
        images.append(image.transpose((2, 0, 1)))
    return np.stack(images).astype(np.float64)


def run_samples(folder: Path, runs: Mapping[str, Sequence[str]], env: Mapping[str, str] | None = None,
                timeout: float = 300, envs: Mapping[str, Mapping[str, str]] | None = None
                ) -> dict[str, tuple[str, str]]:
    """(stdout, stderr) of each run (label -> script name then arguments),
    as :func:`tests.helpers.examples.run_scripts` runs them from ``folder``,
    with no Tessera calibration setting from this process's environment."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("TESSERA_CALIBRATION")}
    return run_scripts(runs, folder, env, envs, timeout, base)


def raw_pixel_model(model):
    """``model`` taking raw 0-255 pixels, as an IR converted with the Model
    Optimizer's --scale and --mean_values does: x / 255 (a constant scalar:
    a Power layer), minus a mean per channel (a ScaleShift layer)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    name = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["scaled" if tensor == name else tensor for tensor in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.array(1 / 255, np.float32), "pixel_scale"),
                              numpy_helper.from_array(np.array([0.4, 0.45, 0.5], np.float32).reshape(3, 1, 1),
                                                      "pixel_mean")])
    nodes = [helper.make_node("Mul", [name, "pixel_scale"], ["unit"], name="scale"),
             helper.make_node("Sub", ["unit", "pixel_mean"], ["scaled"], name="mean"), *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def photo_pixels(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` crops of scikit-learn's two sample photos, each as the
    samples feed an image: BGR pixels 0-255, [1, 3, size, size] float32."""
    from PIL import Image

    from compiler.zoo.images import sample_photos

    photos = [Image.fromarray(pixels) for pixels in sample_photos()]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        left, top, side = int(rng.integers(0, 300)), int(rng.integers(0, 100)), int(rng.integers(150, 320))
        rgb = np.asarray(photos[i % 2].crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))
        crops.append(rgb[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32))
    return crops

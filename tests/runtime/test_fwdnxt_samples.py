"""User scripts written as the Micron/FWDNXT SDK's public Python samples
are (examples/python of SDK 0.3.16: simpledemo, threadeddemo, pollingdemo,
interleavingdemo; the 2018 TutorialMultiFPGACluster; api-notes 1.5, 1.6,
1.11), with only the import line (``from runtime import fwdnxt``) and the
model path changed, run as subprocesses (issue 53 items 4 and 8). Each
script compiles the model itself, as the samples do; their results are
checked against one in-process run of the binary the first script wrote."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT

PIL = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[2]
SIDE = 16
CLASSES = 10
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)

# The samples' shared part: arguments, and an image loaded as they load it
# (resized, /255, transposed to plane-major CHW, normalised per plane).
PROLOGUE = """#!/usr/bin/python3
import sys
from runtime import fwdnxt
import threading
import os
import PIL
from PIL import Image
import numpy as np
from time import sleep

from argparse import ArgumentParser
parser = ArgumentParser(description="FWDNXT demo")
_ = parser.add_argument
_('modelpath', type=str, default='', help='Path to the model file')
_('images', type=str, default='', help='An image file, or a directory name with input files')
_('-r', '--res', type=int, default=[3, 224, 224], nargs='+', help='expected image size (planes, height, width)')
_('-c', '--categories', type=str, default='', help='Categories file')
_('-l', '--load', type=str, default='', help='Load bitfile')
args = parser.parse_args()
xres = args.res[2]
yres = args.res[1]

def LoadImage(imagepath):
    img = Image.open(imagepath)
    img = img.resize((xres, yres), resample=PIL.Image.BILINEAR)
    img = np.array(img).astype(np.float32) / 255
    img = np.ascontiguousarray(img.transpose(2, 0, 1))
    stat_mean = list([0.485, 0.456, 0.406])
    stat_std = list([0.229, 0.224, 0.225])
    for i in range(3):
        img[i] = (img[i] - stat_mean[i]) / stat_std[i]
    return img

def show(name, result):
    idxs = (-result).argsort()
    print('')
    print('-------------- ' + str(name) + ' --------------')
    for i in range(5):
        print(idxs[i], result[idxs[i]])
"""

SCRIPTS = {
    # one image through Run into the buffer Compile's count sizes
    "simpledemo": """
ie = fwdnxt.FWDNXT()
swnresults = ie.Compile("{:d}x{:d}x{:d}".format(args.res[2], args.res[1], args.res[0]), args.modelpath, 'save.bin')
nresults = ie.Init('save.bin', args.load)
img = LoadImage(args.images)
result = np.ndarray(swnresults, dtype=np.float32)
ie.Run(img, result)
show(os.path.basename(args.images), result)
ie.Free()
""",
    # a putter (the main thread) and a getter thread; PutInput(None, None) ends it
    "threadeddemo": """
def GetResult():
    result = np.ndarray(swnresults, dtype=np.float32)
    while True:
        imgname = ie.GetResult(result)
        if imgname == None:
            break
        show(imgname, result)

ie = fwdnxt.FWDNXT()
swnresults = ie.Compile("{:d}x{:d}x{:d}".format(args.res[1], args.res[2], args.res[0]), args.modelpath, 'save.bin')
nresults = ie.Init('save.bin', args.load)
thread = threading.Thread(target=GetResult)
thread.start()
for fn in sorted(os.listdir(args.images)):
    img = LoadImage(args.images + '/' + fn)
    ie.PutInput(img, fn)
ie.PutInput(None, None)
thread.join()
ie.Free()
print('done')
""",
    # non-blocking: PutInput returns False and GetResult None instead of waiting
    "pollingdemo": """
ie = fwdnxt.FWDNXT()
ie.SetFlag('blockingmode', '0')
swnresults = ie.Compile("{:d}x{:d}x{:d}".format(args.res[1], args.res[2], args.res[0]), args.modelpath, 'save.bin')
nresults = ie.Init('save.bin', args.load)
result = np.ndarray(swnresults, dtype=np.float32)
nimages = 0
polls = 0

def getresult():
    imgname = ie.GetResult(result)
    if imgname is not None:
        show(imgname, result)
        return True
    return False

for fn in sorted(os.listdir(args.images)):
    img = LoadImage(args.images + '/' + fn)
    while True:
        if ie.PutInput(img, fn):
            nimages += 1
            break
        if getresult():
            nimages -= 1
        else:
            polls += 1
            sleep(0.001)
while nimages > 0:
    if getresult():
        nimages -= 1
    else:
        polls += 1
        sleep(0.001)
ie.Free()
print('polls', polls)
""",
    # PutInput of image n, then GetResult of image n-1
    "interleavingdemo": """
ie = fwdnxt.FWDNXT()
swnresults = ie.Compile("{:d}x{:d}x{:d}".format(args.res[1], args.res[2], args.res[0]), args.modelpath, 'save.bin')
nresults = ie.Init('save.bin', args.load)
result = np.ndarray(swnresults, dtype=np.float32)
nimages = 0

def getresult():
    imgname = ie.GetResult(result)
    show(imgname, result)

for fn in sorted(os.listdir(args.images)):
    img = LoadImage(args.images + '/' + fn)
    ie.PutInput(img, fn)
    nimages += 1
    if nimages > 1:
        getresult()
if nimages > 0:
    getresult()
ie.Free()
print('done')
""",
    # TutorialMultiFPGACluster: 2 FPGAs batching, then 2 clusters splitting one image (nobatch)
    "TutorialMultiFPGACluster": """
numfpga = 2
numclus = 1
sf = fwdnxt.FWDNXT()
snwresults = sf.Compile('{:d}x{:d}x3'.format(xres, yres), args.modelpath, 'fwdnxt.bin', numfpga, numclus)
sf.Init('fwdnxt.bin', '')
output = np.ndarray(2*snwresults, dtype=np.float32)
names = sorted(os.listdir(args.images))[:2]
input_img = np.concatenate([LoadImage(args.images + '/' + fn) for fn in names])
sf.Run(input_img, output)
for k, fn in enumerate(names):
    show('batch ' + fn, output[k * snwresults:(k + 1) * snwresults])
sf.Free()

numfpga = 1
numclus = 2
sf = fwdnxt.FWDNXT()
sf.SetFlag('nobatch', '1')
snwresults = sf.Compile('{:d}x{:d}x3'.format(xres, yres), args.modelpath, 'fwdnxt2.bin', numfpga, numclus)
sf.Init('fwdnxt2.bin', '')
output = np.ndarray(snwresults, dtype=np.float32)
sf.Run(LoadImage(args.images + '/' + names[0]), output)
show('split ' + names[0], output)
sf.Free()
""",
}


def _model(path: Path) -> None:
    """A small classifier of 3x16x16 images: conv, relu, pooling, FC to 10 classes."""
    b = OnnxBuilder("demo", seed=3)
    x = b.input("image", [1, 3, SIDE, SIDE])
    h = b.node("Relu", [b.conv(x, 3, 8, 3, stride=2)])
    h = b.node("Flatten", [b.node("GlobalAveragePool", [h])], axis=1)
    onnx.save(b.model([b.linear(h, 8, CLASSES)]), path)


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    smooth = np.kron(rng.integers(0, 256, (6, 6, 3)), np.ones((4, 4, 1)))[:20, :20]
    PIL.fromarray(smooth.astype(np.uint8)).save(path)


def _load(path: Path) -> np.ndarray:
    """The samples' LoadImage, in process."""
    img = np.asarray(PIL.open(path).resize((SIDE, SIDE), resample=PIL.BILINEAR), np.float32) / 255
    return np.ascontiguousarray(((img - MEAN) / STD).transpose(2, 0, 1), np.float32)


def _printed(out: str) -> dict[str, list[tuple[int, float]]]:
    """The samples' top-5 blocks: name -> [(class, value)] in print order."""
    blocks = {}
    for name, body in re.findall(r"-------------- (.+?) --------------\n((?:\d+ \S+\n){5})", out):
        assert name not in blocks, f"{name} printed twice"
        blocks[name] = [(int(c), float(v)) for c, v in (line.split() for line in body.splitlines())]
    return blocks


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Every sample run once, all started at once (each in a folder of its own, where it writes
    its binary); their stdout, and each image's expected result from one in-process run."""
    root = tmp_path_factory.mktemp("fwdnxt-samples")
    _model(root / "model.onnx")
    images = root / "images"
    images.mkdir()
    names = [f"img{i}.png" for i in range(5)]
    for i, name in enumerate(names):
        _image(images / name, i)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = {}
    for name, body in SCRIPTS.items():
        folder = root / name
        folder.mkdir()
        (folder / f"{name}.py").write_text(PROLOGUE + body)
        target = images / names[0] if name == "simpledemo" else images
        processes[name] = subprocess.Popen(
            [sys.executable, f"{name}.py", str(root / "model.onnx"), str(target), "-r", "3", str(SIDE), str(SIDE)],
            cwd=folder, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outputs = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name} exited {process.returncode}:\n{out}\n{err}"
        outputs[name] = out
    ie = FWDNXT()
    ie.Init(str(root / "simpledemo" / "save.bin"), "")
    expected = {}
    for name in names:
        result = np.zeros(CLASSES, np.float32)
        ie.Run(_load(images / name), result)
        expected[name] = result
    ie.Free()
    return outputs, expected, root


def _same(printed: list[tuple[int, float]], result: np.ndarray) -> None:
    top = (-result).argsort()[:5]
    assert [c for c, _ in printed] == list(top)
    np.testing.assert_allclose([v for _, v in printed], result[top], rtol=1e-5, atol=1e-6)


def test_simpledemo_runs_one_image_into_the_buffer_compile_sizes(demos):
    outputs, expected, _ = demos
    (block,) = _printed(outputs["simpledemo"]).items()
    assert block[0] == "img0.png"
    _same(block[1], expected["img0.png"])


@pytest.mark.parametrize("demo", ["threadeddemo", "pollingdemo", "interleavingdemo"])
def test_putinput_getresult_demos_give_every_image_once_tagged_with_its_name(demos, demo):
    """api-notes 1.6: results come back tagged with the userobj put with them, each once."""
    outputs, expected, _ = demos
    printed = _printed(outputs[demo])
    assert list(printed) == sorted(expected)  # in input order, every image once
    for name, block in printed.items():
        _same(block, expected[name])


def test_multi_fpga_tutorial_allocates_twice_compiles_count(demos):
    """api-notes 1.5, TutorialMultiFPGACluster as written: Compile with
    numfpga=2 returns one image's count, the output buffer is 2*snwresults,
    the input two images concatenated; nobatch=1 on 2 clusters gives one
    image's outputs in snwresults."""
    outputs, expected, root = demos
    printed = _printed(outputs["TutorialMultiFPGACluster"])
    assert list(printed) == ["batch img0.png", "batch img1.png", "split img0.png"]
    for key, block in printed.items():
        _same(block, expected[key.split()[1]])
    ie = FWDNXT()
    assert ie.Init(str(root / "TutorialMultiFPGACluster" / "fwdnxt.bin"), "") == 2 * CLASSES
    assert (ie.GetInfo("swoutsize"), ie.GetInfo("outsize"), ie.GetInfo("numfpga")) == (CLASSES, 2 * CLASSES, 2)
    ie.Free()

"""The FWDNXT-style API: Compile, Init, Run / Run_sw / Run_th, GetInfo,
SetFlag, Free, and a clear error for every misuse."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

from compiler.zoo import resnet
from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT
from runtime.fwdnxt import FWDNXTError, FWDNXTWarning
from runtime.hardware import MAX_CARDS


def _samples(shape, count=4):
    rng = np.random.default_rng(5)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fwdnxt")
    onnx.save(resnet(depth=10, image=32, classes=10, width=8), folder / "r.onnx")
    ie = FWDNXT()
    count = ie.Compile("32x32x3", str(folder / "r.onnx"), str(folder / "r.bin"), samples=_samples([1, 3, 32, 32]))
    return folder, count


@pytest.fixture
def ie(compiled):
    folder, _ = compiled
    ie = FWDNXT()
    ie.Init(str(folder / "r.bin"), "")
    return ie


def test_compile_returns_the_output_count_and_warns_without_samples(compiled, tmp_path):
    folder, count = compiled
    assert count == 10
    with pytest.warns(UserWarning, match="synthetic"):
        FWDNXT().Compile("32x32x3", str(folder / "r.onnx"), str(tmp_path / "s.bin"))


def test_run_matches_run_sw_and_is_close_to_run_th(ie):
    x = _samples([1, 3, 32, 32], 1)[0]
    device, simulated, reference = (np.zeros(10, np.float32) for _ in range(3))
    ie.Run(x, device)
    hwtime = ie.GetInfo("hwtime")
    ie.Run_sw(x, simulated)
    ie.Run_th(x, reference)
    np.testing.assert_array_equal(device, simulated)
    assert hwtime > 0 and ie.GetInfo("hwtime") == hwtime
    snr = 10 * np.log10(np.sum(reference ** 2) / np.sum((device - reference) ** 2))
    assert snr > 20, snr
    for given in (x[0], x.reshape(-1), x.reshape(3, 1024)):  # FWDNXT took inputs by size: CHW, flat, any shape
        by_size = np.zeros(10, np.float32)
        ie.Run(given, by_size)
        np.testing.assert_array_equal(by_size, device)
        ie.Run_th(given, by_size)
        np.testing.assert_array_equal(by_size, reference)


def test_get_info_reports_the_model_and_the_hardware(ie):
    assert ie.GetInfo("numcluster") == 1 and ie.GetInfo("numfpga") == 1 and ie.GetInfo("numbatch") == 1
    assert ie.GetInfo("freq") == 250 and ie.GetInfo("maxcluster") == 4 and ie.GetInfo("maxfpga") == MAX_CARDS
    assert ie.GetInfo("version").startswith("tessera") and ie.GetInfo("backend") == "simulator"
    assert ie.GetInfo("inshapes") == "1x3x32x32" and ie.GetInfo("outshapes") == "1x10"
    assert ie.GetInfo("innames") == "image" and ie.GetInfo("outnames") == "probabilities"
    assert ie.GetInfo("config")["macs_per_unit"] == 64
    with pytest.raises(FWDNXTError, match="unknown name 'nope'"):
        ie.GetInfo("nope")


def test_debug_flag_prints_basic_information_and_layers(compiled, capsys):
    ie = FWDNXT()
    ie.SetFlag("debug", "bp")
    ie.Init(str(compiled[0] / "r.bin"), "")
    ie.Run(np.zeros((1, 3, 32, 32), np.float32), np.zeros(10, np.float32))
    out = capsys.readouterr().out
    assert "FWDNXT: Init" in out and "backend simulator" in out
    assert "FWDNXT: layer " in out and "from conv_" in out and "FWDNXT: Run: hwtime" in out


def test_set_flag_checks_names_and_values(ie):
    ie.SetFlag("debug", "b")
    ie.SetFlag("nlayers", "3")
    assert ie.GetInfo("debug") == "b" and ie.GetInfo("nlayers") == 3
    with pytest.raises(FWDNXTError, match="unknown flag 'turbo'"):
        ie.SetFlag("turbo", "1")
    with pytest.raises(FWDNXTError, match="takes an integer"):
        ie.SetFlag("nlayers", "many")
    with pytest.warns(FWDNXTWarning, match="fpgaid='510', which has no effect on the simulator: no card is attached"):
        ie.SetFlag("fpgaid", "510")
    with pytest.raises(FWDNXTError, match=r"fpgaid='999': it takes \['sim', '-1', '510', '511', '852'\]"):
        ie.SetFlag("fpgaid", "999")


def test_misuse_gives_clear_errors(compiled, ie):
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(FWDNXTError, match=r"must have shape \[1, 3, 32, 32\], got \[1, 3, 16, 16\]: 768 values "
                                          r"where 3072 are expected \(any float32 array of 3072 values will do"):
        ie.Run(np.zeros((1, 3, 16, 16), np.float32), np.zeros(10, np.float32))
    with pytest.raises(FWDNXTError, match=r"Run_th: input 'image' .* got \[3073\]: 3073 values where 3072"):
        ie.Run_th(np.zeros(3073, np.float32), np.zeros(10, np.float32))
    with pytest.raises(FWDNXTError, match="must be float32, got float64"):
        ie.Run(x.astype(np.float64), np.zeros(10, np.float32))
    with pytest.raises(FWDNXTError, match="has 9 values; the output has 10"):
        ie.Run(x, np.zeros(9, np.float32))
    with pytest.raises(FWDNXTError, match="must be a float32 numpy array"):
        ie.Run(x, np.zeros(10, np.float64))
    with pytest.raises(FWDNXTError, match="1 input"):
        ie.Run((x, x), np.zeros(10, np.float32))
    fresh = FWDNXT()
    with pytest.raises(FWDNXTError, match="Run called before Init"):
        fresh.Run(x, np.zeros(10, np.float32))
    ie.Free()
    with pytest.raises(FWDNXTError, match="Run_sw called after Free"):
        ie.Run_sw(x, np.zeros(10, np.float32))
    with pytest.raises(FWDNXTError, match="bitfile 'missing.bit' does not exist"):
        FWDNXT().Init(str(compiled[0] / "r.bin"), "missing.bit")


def test_nlayers_compiles_only_the_first_layers(compiled, tmp_path):
    folder, _ = compiled
    ie = FWDNXT()
    count = ie.Compile("32x32x3", str(folder / "r.onnx"), str(tmp_path / "n.bin"), nlayers=2,
                       samples=_samples([1, 3, 32, 32]))
    assert count == 8 * 16 * 16  # conv + relu at stride 2: the first layers' output
    ie.Init(str(tmp_path / "n.bin"), "")
    assert ie.GetInfo("outshapes") == "1x8x16x16"
    out, ref = np.zeros(count, np.float32), np.zeros(count, np.float32)
    x = _samples([1, 3, 32, 32], 1)[0]
    ie.Run(x, out)
    ie.Run_th(x, ref)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


def _two_in_two_out(path):
    b = OnnxBuilder("two", seed=1)
    x, y = b.input("x", [1, 4, 8, 8]), b.input("y", [1, 4, 8, 8])
    s = b.node("Relu", [b.conv(b.node("Add", [x, y]), 4, 4, 3)])
    onnx.save(b.model([s, b.node("MaxPool", [s], kernel_shape=[2, 2], strides=[2, 2])]), path)


def test_several_inputs_and_outputs_take_tuples(tmp_path):
    _two_in_two_out(tmp_path / "two.onnx")
    ie = FWDNXT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = ie.Compile("8x8x4;8x8x4", str(tmp_path / "two.onnx"), str(tmp_path / "two.bin"))
    assert counts == (256, 64)
    assert ie.Init(str(tmp_path / "two.bin"), "") == counts
    x, y = _samples([1, 4, 8, 8], 2)
    results = (np.zeros(256, np.float32), np.zeros(64, np.float32))
    references = (np.zeros(256, np.float32), np.zeros(64, np.float32))
    ie.Run((x, y), results)
    ie.Run_th((x, y), references)
    for got, want in zip(results, references):
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    with pytest.raises(FWDNXTError, match="2 output"):
        ie.Run((x, y), results[0])


def test_a_stripped_binary_is_smaller_and_run_th_says_why_it_cannot(compiled, tmp_path):
    from compiler.compile import compile_model

    folder, _ = compiled
    compile_model(str(folder / "r.onnx"), image="32x32x3", samples=_samples([1, 3, 32, 32]),
                  outfile=tmp_path / "s.bin", strip_reference=True)
    assert (tmp_path / "s.bin").stat().st_size < (folder / "r.bin").stat().st_size
    ie = FWDNXT()
    ie.Init(str(tmp_path / "s.bin"), "")
    x, result = _samples([1, 3, 32, 32], 1)[0], np.zeros(10, np.float32)
    ie.Run(x, result)
    with pytest.raises(FWDNXTError, match="compiled without the float reference program"):
        ie.Run_th(x, result)


def test_run_th_plans_each_pointwise_layer_once(ie, monkeypatch):
    """A layer's planned GEMM is kept by its weights' and bias' identities:
    the binary's arrays must come out in native byte order ('<f4'-labelled
    biases were re-viewed on every call, and every pointwise layer was
    planned again on every inference)."""
    import importlib

    sgemm = importlib.import_module("runtime.gemm.sgemm")
    built = []
    original = sgemm.PackedProduct.__init__

    def counting(self, *args, **kwargs):
        built.append(args[1])
        original(self, *args, **kwargs)

    monkeypatch.setattr(sgemm.PackedProduct, "__init__", counting)
    x, result = _samples([1, 3, 32, 32], 1)[0], np.zeros(10, np.float32)
    ie.Run_th(x, result)
    first = list(built)
    built.clear()
    ie.Run_th(x, result)
    ie.Run_th(x, result)
    assert built == [], f"planned again: {built} (first run planned {first})"
    constants = ie._session.engine._reference.program.constants.values()
    assert all(a.dtype.byteorder in "=|" for a in constants)


def test_batch_mode_runs_one_image_per_cluster_and_card(compiled, ie, tmp_path):
    """api-notes 1.5: Compile returns the count of one cluster's images
    (per image x imgs_per_cluster), Init the whole run's (times numcard x
    numclus); the inputs are the images concatenated (by size: NCHW or
    flat) and each image's result equals its single-image run."""
    folder, _ = compiled
    batched = FWDNXT()
    batched.SetFlag("imgs_per_cluster", "2")
    count = batched.Compile("32x32x3", str(folder / "r.onnx"), str(tmp_path / "b.bin"), numcard=2, numclus=2,
                            samples=_samples([1, 3, 32, 32]))
    assert count == 10 * 2 and batched.Init(str(tmp_path / "b.bin"), "") == 80
    assert batched.GetInfo("numfpga") == 2 and batched.GetInfo("numcluster") == 2
    assert (batched.GetInfo("swoutsize"), batched.GetInfo("outsize"), batched.GetInfo("imgoutsize")) == (20, 80, 10)
    images = np.random.default_rng(2).standard_normal((8, 3, 32, 32)).astype(np.float32)
    result = _each_equals_its_single_run(batched, ie, images)
    flat = np.zeros(80, np.float32)
    batched.Run(images.reshape(-1), flat)
    np.testing.assert_array_equal(flat, result)
    with pytest.raises(FWDNXTError, match=r"must have shape \[8, 3, 32, 32\] \(8 images of \[1, 3, 32, 32\]"):
        batched.Run(images[:4], result)
    with pytest.raises(FWDNXTError, match=r"has 10 values; the output has 80 \(8 images of \[1, 10\]\)"):
        batched.Run(images, np.zeros(10, np.float32))
    with pytest.raises(FWDNXTError, match="numclus=5: a card has 4 clusters"):
        FWDNXT().Compile("32x32x3", str(folder / "r.onnx"), str(tmp_path / "c.bin"), numclus=5)


def test_mvbatch_runs_a_clusters_four_images_together(compiled, ie, tmp_path):
    """Option letter 'm' (mvbatch=1) with imgs_per_cluster=4: one cluster
    takes 4 images a run, each weight tile loaded once for the 4; each
    result equals the image's single run."""
    folder, _ = compiled
    mv = FWDNXT()
    mv.SetFlag("options", "m")
    mv.SetFlag("imgs_per_cluster", "4")
    assert mv.Compile("32x32x3", str(folder / "r.onnx"), str(tmp_path / "m.bin"), samples=_samples([1, 3, 32, 32])) \
        == 40
    mv.Init(str(tmp_path / "m.bin"), "")
    images = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    _each_equals_its_single_run(mv, ie, images)


def _each_equals_its_single_run(batched: FWDNXT, single_ie: FWDNXT, images: np.ndarray) -> np.ndarray:
    """Run the batch on ``batched``; each image's 10 results equal its run on ``single_ie``."""
    result = np.zeros(10 * len(images), np.float32)
    batched.Run(images, result)
    for i in range(len(images)):
        single = np.zeros(10, np.float32)
        single_ie.Run(images[i:i + 1], single)
        np.testing.assert_array_equal(result[10 * i:10 * (i + 1)], single)
    return result

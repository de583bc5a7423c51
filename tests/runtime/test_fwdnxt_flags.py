"""Every SetFlag and GetInfo name of api-notes 1.4.1 to 1.4.4: done with its
meaning there, or taken with no effect on the simulator and a warning (once,
naming the flag and why) as FWDNXT took it (issue 53 item 4); the help text
and docs/fwdnxt.md list them; misuse (item 9 of issue 18) names the flag or
argument at fault."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime import FWDNXT, fwdnxt_flags, hardware
from runtime.fwdnxt import FWDNXTError, FWDNXTWarning
from runtime.fwdnxt_flags import DEBUG_LETTERS, FLAGS, INFO, OPTION_LETTERS, REJECTED_INFO
from tests.helpers.fwdnxt import OUTPUTS, compile_tiny, images

DOCS = Path(__file__).parents[2] / "docs" / "fwdnxt.md"

# api-notes 1.4.1 and 1.4.2 (flags), 1.4.4 (GetInfo names), as written there.
NOTES_FLAGS = """nobatch hwlinear convalgo paddingalgo blockingmode max_instr debug imgs_per_cluster remove
two_programs addr_off profile quantize fpgaid seed nlayers parametric_offset no_rearrange comparesw mvbatch
ignore_transpose depthconvalgo help reset bitfile firstcluster nclusters nfpgas clustersbatchmode bufsmode
progload force_algo compile_profile gen_loops multicu_vpadding optimize_computes prune int8mode addroff runsw
rand lremove dumpdir has_varfp varfp sandbox breaklayer initmeasure hwwait max_instruction_size temporary_save
heterogeneous""".split()
NOTES_INFO = """hwtime numcluster numfpga numbatch freq maxcluster maxfpga version addr_off busy_comp build
hwversion hwbuild outshape help addroff hwdebug temperature inshapes outshapes innames outnames
print_flags""".split()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flags")
    compile_tiny(folder)
    return folder


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the once-per-process warnings afresh."""
    monkeypatch.setattr(fwdnxt_flags, "_warned", set())


@pytest.fixture
def ie(folder):
    ie = FWDNXT()
    ie.Init(str(folder / "tiny.bin"), "")
    yield ie
    ie.Free()


def test_every_documented_name_is_in_the_tables():
    assert set(NOTES_FLAGS) <= set(FLAGS)
    assert set(NOTES_INFO) <= set(INFO) | set(REJECTED_INFO)


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_each_flag_is_done_or_taken_with_a_warning_saying_why(name, recwarn):
    ie, flag = FWDNXT(), FLAGS[name]
    if flag.inert:  # FWDNXT took it and returned None: so does Tessera, warning once that it has no effect here
        with pytest.warns(FWDNXTWarning, match=rf"SetFlag: flag '{name}', which has no effect on the simulator: \w+"):
            assert ie.SetFlag(name, "1") is None
        ie.SetFlag(name, "2")  # once per process: no second warning
        assert name in INFO or ie.GetInfo(name) == 2  # addr_off and addroff: GetInfo gives the map's last address
        assert not [w for w in recwarn if w.category is FWDNXTWarning]
    elif name not in ("help", "reset"):
        ie.SetFlag(name, str(flag.default))
        assert ie.GetInfo(name) == flag.default and not [w for w in recwarn if w.category is FWDNXTWarning]
        for value in (5,) if flag.ignored is True else flag.ignored:  # values taken with no effect here
            with pytest.warns(FWDNXTWarning, match=rf"SetFlag: {name}={value!r}, which has no effect"):
                ie.SetFlag(name, str(value))
            assert ie.GetInfo(name) == value
        if flag.values and isinstance(flag.default, int) and not flag.ignored:
            with pytest.raises(FWDNXTError, match=rf"SetFlag: {name}=7: .*\(the values here: "):
                ie.SetFlag(name, "7")


def test_the_flags_scripts_set_first_are_taken_as_fwdnxt_took_them(recwarn):
    """The flags that stopped scripts at their first line (issue 53): each
    SetFlag returns None, warns once per process naming the flag, and
    GetInfo reads the value back."""
    ie = FWDNXT()
    for name, value in (("convalgo", "1"), ("paddingalgo", "1"), ("max_instr", "100000"), ("seed", "42"),
                        ("profile", "1")):
        assert ie.SetFlag(name, value) is None
        assert ie.GetInfo(name) == int(value)
    ie.SetFlag("options", "k")
    FWDNXT().SetFlag("seed", "7")  # once per process, not per object
    messages = [str(w.message) for w in recwarn if w.category is FWDNXTWarning]
    assert len(messages) == 5, messages
    for name in ("convalgo", "paddingalgo", "max_instr", "seed", "profile"):
        assert sum(f"flag '{name}'" in m for m in messages) == 1, (name, messages)
    assert recwarn[0].filename == __file__  # the warning points at the script's SetFlag line
    assert ie.GetInfo("convalgo") == 1 and ie.GetInfo("options") == "k"


def test_values_that_would_change_results_are_still_refused(folder, tmp_path):
    ie = FWDNXT()
    for name in ("remove", "lremove", "no_rearrange"):
        ie.SetFlag(name, "0")
        with pytest.raises(FWDNXTError, match=rf"SetFlag: {name}=3: .*\(the values here: \[0\]\)"):
            ie.SetFlag(name, "3")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
                               helper.make_node("Relu", ["t"], ["y"])], "nhwc",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "nhwc.onnx")
    with pytest.warns(FWDNXTWarning, match="ignore_transpose=1, which has no effect"):
        ie.SetFlag("ignore_transpose", "1")
    with pytest.raises(FWDNXTError, match="Compile: ignore_transpose=1, and Transpose .* is at an input or output"):
        ie.Compile("2x2x2", str(tmp_path / "nhwc.onnx"), str(tmp_path / "nhwc.bin"))
    _, count = compile_tiny(tmp_path, ie=ie)  # no Transpose at an edge: no effect
    assert count == OUTPUTS


def test_letters_set_flags_or_say_why_they_have_no_effect():
    ie = FWDNXT()
    ie.SetFlag("options", "CHs")
    assert ie.GetInfo("clustersbatchmode") == 1 and ie.GetInfo("nobatch") == 1
    assert ie.GetInfo("hwlinear") == 1 and ie.GetInfo("comparesw") == 1 and ie.GetInfo("options") == "CHs"
    ie.SetFlag("options", "L")
    assert ie.GetInfo("breaklayer") == 2 and ie.GetInfo("options") == "CHsL"
    with pytest.warns(FWDNXTWarning, match=r"options letter 'k' \(convalgo=1\) sets flag 'convalgo', which has no "
                                           "effect on the simulator: Tessera's tile pass"):
        ie.SetFlag("options", "mk")
    assert ie.GetInfo("mvbatch") == 1 and ie.GetInfo("convalgo") == 1
    with pytest.warns(FWDNXTWarning, match=r"options letter 'z' \(breaklayer=1\) sets breaklayer=1, which has no "
                                           "effect on the simulator: the engine returns"):
        ie.SetFlag("options", "z")
    with pytest.warns(FWDNXTWarning, match="options letter 'p' has no effect on the simulator: clusters run"):
        ie.SetFlag("options", "p")
    with pytest.raises(FWDNXTError, match="options letter '#' is unknown"):
        ie.SetFlag("options", "#")
    for letter, (meaning, why) in DEBUG_LETTERS.items():
        if meaning:
            ie.SetFlag("debug", letter)
        else:
            with pytest.warns(FWDNXTWarning, match=f"debug letter '{letter}' has no effect on the simulator"):
                ie.SetFlag("debug", "b" + letter)
            assert ie.GetInfo("debug") == "b" + letter
    with pytest.raises(FWDNXTError, match="debug letter '%' is unknown"):
        ie.SetFlag("debug", "%")
    ie.SetFlag("reset", "")
    assert ie.GetInfo("breaklayer") == 0 and ie.GetInfo("debug") == "w" and ie.GetInfo("options") == ""


def test_help_and_the_docs_list_every_name(capsys):
    ie = FWDNXT()
    ie.SetFlag("help", "")
    printed = capsys.readouterr().out
    assert printed.strip() == ie.GetInfo("help").strip()
    docs = DOCS.read_text()
    for name, flag in FLAGS.items():
        assert f"`{name}`" in docs, name
        if not flag.inert:
            assert f"  {name} (" in printed, name
    for name in [*INFO, *REJECTED_INFO]:
        assert f"`{name}`" in docs, name
        assert name in printed, name
    for letter in [*DEBUG_LETTERS, *OPTION_LETTERS]:
        assert f"`{letter}`" in docs, letter


def test_get_info_answers_every_name_it_can(ie, capsys):
    answers = {name: ie.GetInfo(name) for name in INFO}
    assert answers["maxfpga"] == hardware.MAX_CARDS and answers["maxcluster"] == 4 and answers["freq"] == 250
    assert answers["numcluster"] == answers["numfpga"] == answers["numbatch"] == 1
    assert answers["outshape"] == (2, 2, 2, 1) and answers["inshapes"] == "1x2x2x2" and answers["innames"] == "x"
    assert answers["addr_off"] == answers["addroff"] == ie._session.engine.model.dram_size > 0
    assert answers["hwbuild"] == ie._session.engine.model.config.digest() and "simulator" in answers["hwversion"]
    assert "binary format" in answers["build"] and answers["busy_comp"] == 0 and answers["hwtime"] == 0.0
    assert "blockingmode=1" in answers["print_flags"] and "blockingmode=1" in capsys.readouterr().out
    ie.Run(images(1)[0], np.zeros(OUTPUTS, np.float32))
    assert ie.GetInfo("hwtime") > 0
    for name, why in REJECTED_INFO.items():
        with pytest.raises(FWDNXTError, match=f"GetInfo: '{name}' has no meaning on the simulator: {why}"):
            ie.GetInfo(name)
    fresh = FWDNXT()
    assert fresh.GetInfo("maxcluster") == 4 and fresh.GetInfo("maxfpga") == hardware.MAX_CARDS
    with pytest.raises(FWDNXTError, match=r"GetInfo\('numbatch'\) called before Init"):
        fresh.GetInfo("numbatch")


def test_runsw_2_runs_the_float_reference_and_comparesw_compares_with_it(ie, capsys):
    x = images(1)[0]
    device, reference, run = (np.zeros(OUTPUTS, np.float32) for _ in range(3))
    ie.Run(x, device)
    ie.Run_th(x, reference)
    ie.SetFlag("runsw", "2")
    ie.Run(x, run)
    np.testing.assert_array_equal(run, reference)
    assert not np.array_equal(device, reference)  # quantized: the two differ
    ie.SetFlag("runsw", "0")
    ie.SetFlag("comparesw", "1")
    ie.SetFlag("debug", "R")
    ie.Run(x, run)
    out = capsys.readouterr().out
    diff = np.abs(device - reference).max()
    assert f"FWDNXT: Run: comparesw image 0 output conv_3: max |diff| {diff:.6g}, SNR " in out
    assert f"[0] {device[0]:.6g} reference {reference[0]:.6g}" in out
    ie.PutInput(x, "tag")
    assert ie.GetResult(run) == "tag" and "FWDNXT: GetResult: comparesw image 0" in capsys.readouterr().out


def test_comparesw_compares_with_the_inputs_given_when_the_result_buffer_is_the_input(ie, capsys):
    """Run writes its outputs straight into the result buffer; comparesw then
    runs the float reference on the inputs, so a caller whose one buffer is
    both (the tiny model's input and output have 8 values each) must still
    get the comparison of the inputs it gave, and the same results."""
    x = images(1, seed=3)[0].reshape(-1)
    ie.SetFlag("comparesw", "1")
    ie.SetFlag("debug", "R")
    apart = np.zeros(OUTPUTS, np.float32)
    ie.Run(x, apart)
    want = capsys.readouterr().out
    one = x.copy()
    ie.Run(one, one)
    assert capsys.readouterr().out == want and "comparesw image 0" in want
    np.testing.assert_array_equal(one, apart)


def test_a_run_whose_dram_dump_fails_leaves_the_result_buffer_as_it_was(ie, tmp_path):
    """dumpdir's dump runs after the device's last write and can fail; the
    failed call must not have written its outputs into the caller's buffer."""
    folder = tmp_path / "dumps"
    folder.mkdir()
    ie.SetFlag("dumpdir", str(folder))
    folder.rmdir()
    folder.write_text("")  # now a file: the dump cannot be written into it
    result = np.full(OUTPUTS, -7.0, np.float32)
    with pytest.raises(FWDNXTError, match="Run: the run failed"):
        ie.Run(images(1, seed=5)[0], result)
    assert np.all(result == -7.0)


def test_breaklayer_2_prints_each_layers_modelled_time(ie, capsys):
    ie.SetFlag("breaklayer", "2")
    ie.Run(images(1)[0], np.zeros(OUTPUTS, np.float32))
    (layer,) = ie._session.engine.device.layer_times()
    assert f"FWDNXT: Run: layer {layer.name} (QConv): {layer.cycles} cycles" in capsys.readouterr().out


def test_debug_letters_print_and_write_what_they_say(folder, tmp_path, capsys):
    ie = FWDNXT()
    ie.SetFlag("debug", "bncsSCpQiJ")
    ie.SetFlag("dumpdir", str(tmp_path))
    ie.Init(str(folder / "tiny.bin"), "")
    out = capsys.readouterr().out
    for text in ("FWDNXT: Init", "layer conv_3 (QConv) on the accelerator", "segment segment0 on the accelerator",
                 "DRAM: ", "segment segment0 input x int8[1, 2, 2, 2]", "card 0 cluster 0 phase 0:",
                 "instructions, ", "MACs", "scale", "from conv_3"):
        assert text in out, text
    listing = (tmp_path / "instr0_0_0.txt").read_text()
    assert "CONV" in listing and "# conv_3" in listing
    partition = json.loads((tmp_path / "partition.json").read_text())
    assert partition["segments"][0]["device"] == "FPGA"
    assert partition["segments"][0]["layers"][0]["onnx_nodes"] == ["conv_3"]
    x, result = images(1)[0], np.zeros(OUTPUTS, np.float32)
    ie.Run(x, result)
    ie.PutInput(x, 1)
    ie.GetResult(result)
    dumps = sorted(p.name for p in tmp_path.glob("run*_card*.bin"))
    assert dumps == ["run0_card0.bin", "run1_card0.bin"]
    engine = ie._session.engine
    assert (tmp_path / "run1_card0.bin").read_bytes() == engine.device.drams[0].tobytes()
    ie.Free()


def test_compile_takes_its_defaults_and_precision_from_the_flags(folder, tmp_path):
    ie = FWDNXT()
    ie.SetFlag("nfpgas", "2")
    ie.SetFlag("int8mode", "0")
    _, count = compile_tiny(tmp_path, ie=ie)
    assert count == OUTPUTS  # one cluster's image; Init gives the run's two (api-notes 1.5)
    assert ie.Init(str(tmp_path / "tiny.bin"), "") == 2 * OUTPUTS
    assert ie.GetInfo("numfpga") == 2 and ie.GetInfo("numbatch") == 2 and ie.GetInfo("outshape") == (2, 2, 2, 2)
    (segment,) = ie._session.engine.model.device_segments
    assert segment.inputs[0].dtype == "int16"
    pair, result = np.concatenate(images(2)), np.zeros(2 * OUTPUTS, np.float32)
    ie.Run(pair, result)
    with pytest.raises(FWDNXTError, match=r"PutInput: input 'x' must have shape \[2, 2, 2, 2\] \(2 images of"):
        ie.PutInput(pair[:1], "one")
    with pytest.raises(FWDNXTError, match=r"GetResult: the result buffer for .* has 8 values; the output has 16"):
        ie.GetResult(np.zeros(OUTPUTS, np.float32))
    ie.PutInput(pair, "pair")
    second = np.zeros(2 * OUTPUTS, np.float32)
    assert ie.GetResult(second) == "pair"
    np.testing.assert_array_equal(second, result)


@pytest.mark.parametrize("kwargs, flags, message", [
    ({"numclus": 5}, {}, "Compile: numclus=5: a card has 4 clusters"),
    ({"numcard": hardware.MAX_CARDS + 1}, {}, f"Compile: numcard={hardware.MAX_CARDS + 1}: the simulated system "
                                              f"takes 1 to {hardware.MAX_CARDS} cards"),
    ({"numclus": "2"}, {}, "Compile: numclus must be an integer of at least 1, got '2'"),
    ({"numcard": 0}, {}, "Compile: numcard must be an integer of at least 1, got 0"),
    ({"nlayers": -3}, {}, "Compile: nlayers must be an integer of at least -1, got -3"),
    ({}, {"nclusters": "8"}, "Compile: numclus=8: a card has 4 clusters"),
    ({}, {"mvbatch": "1", "imgs_per_cluster": "2"}, "Compile: mvbatch gives each of a cluster's 4 MAC units"),
    ({}, {"clustersbatchmode": "1", "imgs_per_cluster": "2"}, "Compile: imgs_per_cluster=2 batches"),
])
def test_compile_errors_name_the_argument_or_flag(folder, tmp_path, kwargs, flags, message):
    ie = FWDNXT()
    for name, value in flags.items():
        ie.SetFlag(name, value)
    with pytest.raises(FWDNXTError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ie.Compile("2x2x2", str(folder / "tiny.onnx"), str(tmp_path / "x.bin"), **kwargs)


def test_flag_values_are_checked(tmp_path):
    ie = FWDNXT()
    with pytest.raises(FWDNXTError, match="flag 'imgs_per_cluster' takes an integer of at least 1, got 0"):
        ie.SetFlag("imgs_per_cluster", "0")
    with pytest.raises(FWDNXTError, match="bitfile 'missing.bit' does not exist"):
        ie.SetFlag("bitfile", "missing.bit")
    (tmp_path / "file").write_text("")
    with pytest.raises(FWDNXTError, match="dumpdir .* is a file, not a folder"):
        ie.SetFlag("dumpdir", str(tmp_path / "file"))
    with pytest.raises(FWDNXTError, match=r"fpgaid='0': it takes \['sim', '-1', '510', '511', '852'\]"):
        ie.SetFlag("fpgaid", "0")
    with pytest.raises(FWDNXTError, match="Init: .*"):
        ie.Init(str(tmp_path / "file"), "")
    with pytest.raises(FWDNXTError, match="Init: .*missing.bin: cannot read the binary: No such file"):
        ie.Init(str(tmp_path / "missing.bin"), "")


@pytest.mark.parametrize("settings, hwlinear", [([], None), ([("hwlinear", 1)], True), ([("hwlinear", 0)], False),
                                                ([("options", "H")], True), ([("hwlinear", 1), ("reset", "")], None)])
def test_hwlinear_keeps_fwdnxts_meaning_when_set_and_leaves_linear_layers_to_the_policy_when_not(
        monkeypatch, settings, hwlinear):
    """Compile passes hwlinear=1/0 as True/False; never set (or reset), None: the affinity policy places
    linear layers where the placement costs say they pay (passes/affinity.py)."""
    import compiler.compile

    class Seen(Exception):
        pass

    def compile_model(*args, **kwargs):
        raise Seen(kwargs["hwlinear"])

    monkeypatch.setattr(compiler.compile, "compile_model", compile_model)
    ie = FWDNXT()
    for name, value in settings:
        ie.SetFlag(name, value)
    with pytest.raises(Seen) as seen:
        ie.Compile("4x4x3", "model.onnx", "model.bin")
    assert seen.value.args == (hwlinear,)

"""The compile report (compiler/report/): the data it gathers from a binary
agrees with the runtime's own figures, the page is one self-contained file
in which no name from the binary can become markup, and ``tessera report``
writes it atomically and names what is wrong with a bad input."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import compiler.report as report_package
from compiler.cli import main
from compiler.coverage import recorded_coverage
from compiler.report import default_output, gather_report, render_page, write_report
from compiler.report.quality import ReportDataError, target_record
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.isa import COL_OPCODE, Op
from runtime.sim.timing import dma_bytes
from runtime.timeline import KINDS
from tests.helpers import report_models

HOSTILE = '</script><img src=x onerror="document.title=1"><!--'


@pytest.fixture(scope="module")
def small():
    return report_models.small_binary()


@pytest.fixture(scope="module")
def data(small):
    return gather_report(small)


def embedded(page: str) -> dict:
    """The report data a page embeds."""
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert found, "the page embeds no report data"
    return json.loads(found.group(1))


def test_every_layer_is_listed_with_the_cycle_models_cycles(small, data):
    device = Engine(read_binary(small)).device
    times = device.layer_times()
    on_device = [layer for layer in data["layers"] if layer["where"] == "device"]
    assert [layer["name"] for layer in on_device] == [t.name for t in times]
    assert [layer["cycles"] for layer in on_device] == [t.cycles for t in times]
    assert [layer["macs"] for layer in on_device] == [t.macs for t in times]
    assert [layer["onnx"] for layer in on_device] == [list(t.onnx_nodes) for t in times]
    peak = data["model"]["peak_macs_per_cycle"]
    for layer, t in zip(on_device, times):
        assert layer["use"] == (round(t.macs / (t.cycles * peak), 4) if t.macs else None)
    assert data["summary"]["hwtime_ms"] == pytest.approx(device.hwtime_ms)


def test_cpu_layers_carry_their_reason_and_rule(small, data):
    coverage = recorded_coverage(read_binary(small).metadata)
    cpu = [layer for layer in data["layers"] if layer["where"] == "cpu"]
    assert cpu and [layer["name"] for layer in cpu] == [node.name for node in coverage.cpu_nodes]
    for layer, node in zip(cpu, coverage.cpu_nodes):
        assert (layer["reason"], layer["rule"]) == (node.reason, node.rule)
    assert data["cpu_nodes"] == [[n.name, n.op, n.reason, n.rule] for n in coverage.cpu_nodes]


def test_dram_bytes_are_the_layers_load_and_store_rows(small, data):
    model = read_binary(small)
    device = Engine(model).device
    (segment,), (simulator,) = model.device_segments, device.simulators
    by_name = {layer["name"]: layer for layer in data["layers"]}
    for layer in segment.layers:
        rows = simulator.streams[layer.stream]
        mine = np.arange(layer.start, layer.stop)
        ops = rows[mine, COL_OPCODE]
        assert by_name[layer.name]["read"] == int(dma_bytes(rows, mine[ops == Op.LOAD], Op.LOAD).sum())
        assert by_name[layer.name]["written"] == int(dma_bytes(rows, mine[ops == Op.STORE], Op.STORE).sum())
    assert all(by_name[layer.name]["read"] > 0 for layer in segment.layers)


def test_precision_is_read_from_the_instructions(data):
    wide = [layer for layer in data["layers"] if layer.get("precision") == "16-bit"]
    assert any(report_models.WIDE_LAYER in layer["onnx"] for layer in wide)
    assert any(layer.get("precision") == "int8" for layer in data["layers"])


def test_the_schedule_is_the_device_timeline(small, data):
    timeline = Engine(read_binary(small)).device.timeline()
    schedule = data["schedule"]
    spans = np.array(schedule["spans"]).reshape(-1, len(schedule["fields"]))
    assert len(spans) == len(timeline.spans) > 0
    assert schedule["total"] == timeline.total_cycles
    assert schedule["lanes"] == [[lane.card, lane.cluster, lane.unit] for lane in timeline.lanes]
    assert schedule["kinds"] == list(KINDS)
    names = [layer["name"] for layer in data["layers"]]
    for row, span in zip(spans, timeline.spans):
        assert tuple(row[3:6]) == (span.start, span.end, span.busy)
        assert (names[row[1]] if row[1] >= 0 else "") == (span.layer if span.layer in names else "")


def test_split_mode_lists_each_layer_once_with_a_part_per_cluster():
    path = report_models.split_binary()
    data = gather_report(path)
    device = [layer for layer in data["layers"] if layer["where"] == "device"]
    assert len({layer["name"] for layer in device}) == len(device)
    parts: dict[str, list[int]] = {}
    for t in Engine(read_binary(path)).device.layer_times():
        parts.setdefault(t.name, []).append(t.cycles)
    assert {layer["name"]: [p[3] for p in layer["parts"]] for layer in device} == parts
    assert all(layer["cycles"] == max(p[3] for p in layer["parts"]) for layer in device)
    assert max(len(layer["parts"]) for layer in device) == 4
    assert len(data["schedule"]["lanes"]) == 12
    assert KINDS.index("barrier") in data["schedule"]["spans"][2::7]
    assert data["model"]["records"]["placement"]["mode"] == "split"


def test_quantization_fidelity_from_the_target_record_and_a_diagnosis(small, data):
    target = data["quality"]["target"]
    assert target["target_db"] == 20.0 and set(target["after_db"]) == {"probabilities"}
    with_diagnosis = gather_report(small, report_models.diagnosis_file())
    diagnosis = json.loads(report_models.diagnosis_file().read_text())
    shares = [layer["share"] for layer in with_diagnosis["layers"] if "share" in layer]
    assert shares and sum(shares) == pytest.approx(sum(row["share"] for row in diagnosis["layers"]), abs=1e-6)
    assert with_diagnosis["quality"]["diagnosis"]["outputs_snr_db"] == diagnosis["outputs_snr_db"]
    assert data["quality"]["diagnosis"] is None


def test_the_page_is_one_self_contained_file(data):
    page = render_page(data)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<(link|img|iframe)\b|<script[^>]*\bsrc\s*=|@import|url\(", page, re.I)
    assert page.count("<script") == 3 and "<style>" in page
    assert embedded(page) == json.loads(json.dumps(data))


def test_a_hostile_name_cannot_close_the_script_or_become_markup(data):
    hostile = json.loads(json.dumps(data))
    hostile["layers"][0]["name"] = HOSTILE
    hostile["model"]["source"] = HOSTILE
    hostile["model"]["records"]["preprocess"] = {HOSTILE: HOSTILE}
    page = render_page(hostile)
    assert "</script><img" not in page and "<!--" not in page
    assert page.count("</script>") == 3
    assert embedded(page)["layers"][0]["name"] == HOSTILE
    assert "<title>&lt;/script&gt;&lt;img" in page


def test_malformed_metadata_is_named_and_the_rest_still_reported():
    path = report_models.binary_of("malformed.bin", 1, 1, "batch",
                                   {"coverage": {"cpu_nodes": "no"}, "target_snr": ["not", "a", "record"],
                                    "placement": {"mode": HOSTILE}, "compiler": float("inf")})
    data = gather_report(path)
    assert len(data["problems"]) == 2
    assert "'coverage'" in data["problems"][0] and "'target_snr'" in data["problems"][1]
    assert data["cpu_nodes"] is None and data["quality"]["target"] is None
    assert data["model"]["compiler"] == "inf"
    assert all(layer["where"] == "cpu" and layer["reason"] is None or layer["where"] == "device"
               for layer in data["layers"])
    render_page(data)


@pytest.mark.parametrize("field, value", [("promoted", "conv_1"), ("hwtime_ms", [1.0]), ("left", [["a", 1]]),
                                          ("after_db", {"y": "high"})])
def test_a_malformed_target_record_names_its_field(small, field, value):
    record = json.loads(json.dumps(read_binary(small).metadata["target_snr"]))
    record[field] = value
    with pytest.raises(ReportDataError, match=f"'target_snr'.{field}"):
        target_record({"target_snr": record})


def test_a_bad_diagnosis_file_is_named(small, tmp_path):
    bad = tmp_path / "diag.json"
    bad.write_text(json.dumps({"layers": [{"layer": "x", "share": "most"}]}))
    with pytest.raises(ReportDataError, match=r"diag.json: layers\[0\].share is 'most'"):
        gather_report(small, bad)


def test_the_cli_writes_the_report_beside_the_binary(small, tmp_path, capsys):
    binary = tmp_path / "model.bin"
    binary.write_bytes(small.read_bytes())
    assert main(["report", str(binary)]) == 0
    written = default_output(binary)
    assert written == tmp_path / "model.html" and str(written) in capsys.readouterr().out
    assert embedded(written.read_text())["file"]["name"] == "model.bin"
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(binary), "-o", str(out), "--diagnosis", str(report_models.diagnosis_file())]) == 0
    assert embedded(out.read_text())["quality"]["diagnosis"]["file"] == "diagnosis.json"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.html", "model.bin", "model.html"]
    assert default_output(tmp_path / "odd.html") == tmp_path / "odd.html.html"


def test_a_failed_report_leaves_the_previous_file(small, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("previous")

    def broken(data):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(report_package, "render_page", broken)
    with pytest.raises(RuntimeError):
        write_report(small, out)
    assert out.read_text() == "previous" and os.listdir(tmp_path) == ["report.html"]


@pytest.mark.parametrize("case", ["missing", "not a binary", "folder", "bad output", "bad diagnosis"])
def test_the_cli_names_a_bad_path_or_binary(case, small, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a Tessera binary at all")
    args, named = {
        "missing": (["report", str(tmp_path / "gone.bin")], "gone.bin: cannot read the binary"),
        "not a binary": (["report", str(text)], "notes.txt: header: bad magic b'hello, t': not a Tessera binary"),
        "folder": (["report", str(tmp_path)], "it is a directory"),
        "bad output": (["report", str(small), "-o", str(tmp_path / "no" / "r.html")], "-o "),
        "bad diagnosis": (["report", str(small), "--diagnosis", str(text)], "notes.txt: not a JSON diagnosis"),
    }[case]
    assert main(args) == 1
    assert named in capsys.readouterr().err
    assert not list(tmp_path.glob("*.html"))

"""Traces in Chrome's trace-event format (runtime/trace.py, docs/trace.md)
from every entry point: FWDNXT's 'trace' flag, the Inference Engine's
TESSERA_TRACE with PERF_COUNT, tessera-infer --trace and `tessera run
--trace`. Each file is checked against the format as Perfetto and
chrome://tracing read it, and its device events against hwtime."""
from __future__ import annotations

import json
import os
import threading
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from compiler.compile import compile_model
from compiler.zoo import resnet
from runtime import FWDNXT
from runtime.binary import read_binary
from runtime.engine import Engine
from runtime.fwdnxt_flags import FWDNXTError
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError, StatusCode
from runtime.trace import HOST_PID, HostRecorder, trace_document

SHAPE = (1, 3, 32, 32)
META = {"process_name", "thread_name", "process_sort_index", "thread_sort_index", "process_labels"}


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """The small ResNet compiled for one cluster, and split over 2 cards of 2 clusters (copies on the host link)."""
    folder = tmp_path_factory.mktemp("trace")
    model = resnet(depth=10, image=32, classes=10, width=8)
    paths = {"one": folder / "one.bin", "split": folder / "split.bin"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(model, samples=_images(2, seed=3), outfile=paths["one"])
        compile_model(model, samples=_images(2, seed=3), outfile=paths["split"], numcard=2, numclus=2, split=True)
    return paths


# ---------------------------------------------------------------- the format
def validate(path_or_doc) -> dict:
    """Check a trace against the trace-event format (JSON object form) and
    Tessera's rules: every event has ph, pid, tid, name; X events numeric
    ts and dur >= 0; M events name or order a process or thread, with
    args; one thread_name per (pid, tid); X events in file order never go
    back in time within a track, and never overlap on a device lane.
    Returns the document."""
    doc = path_or_doc if isinstance(path_or_doc, dict) else json.loads(Path(path_or_doc).read_text())
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list) and doc["traceEvents"]
    names: dict[tuple, str] = {}
    last: dict[tuple, tuple[float, float]] = {}
    for event in doc["traceEvents"]:
        assert {"ph", "pid", "tid", "name"} <= set(event), event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        track = (event["pid"], event["tid"])
        if event["ph"] == "M":
            assert event["name"] in META and isinstance(event["args"], dict), event
            if event["name"] == "thread_name":
                assert track not in names, f"two thread_name events for {track}"
                names[track] = event["args"]["name"]
            continue
        assert event["ph"] == "X", event
        ts, dur = event["ts"], event["dur"]
        assert isinstance(ts, (int, float)) and isinstance(dur, (int, float)) and ts >= 0 and dur >= 0, event
        if track in last:
            start, end = last[track]
            assert ts >= start, f"{names.get(track)}: {event} starts before the event before it"
            if event["pid"] != HOST_PID:
                assert ts >= end - 1e-6, f"device lane {names.get(track)}: {event} overlaps the one before"
        last[track] = (ts, ts + dur)
    assert set(last) <= set(names), f"X events on unnamed tracks {set(last) - set(names)}"
    return doc


def device_end_us(doc: dict) -> float:
    """The last end of the device's events (every process but the host's), µs."""
    return max(e["ts"] + e["dur"] for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] != HOST_PID)


def host_events(doc: dict) -> list[dict]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == HOST_PID]


def thread_names(doc: dict, pid: int | None = None) -> list[str]:
    return [e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name" and (pid is None or e["pid"] == pid)]


def test_the_validator_refuses_what_the_format_forbids():
    good = {"traceEvents": [{"ph": "M", "pid": 1, "tid": 0, "name": "thread_name", "args": {"name": "a"}},
                            {"ph": "X", "pid": 1, "tid": 0, "name": "x", "ts": 0.0, "dur": 1.0}]}
    validate(good)
    for broken in ({"ph": "X", "pid": 1, "tid": 0, "name": "y", "ts": -1.0, "dur": 1.0},
                   {"ph": "X", "pid": 1, "tid": 0, "ts": 2.0, "dur": 1.0},
                   {"ph": "M", "pid": 1, "tid": 0, "name": "thread_name", "args": {"name": "b"}}):
        with pytest.raises(AssertionError):
            validate({"traceEvents": [*good["traceEvents"], broken]})
    overlapping = [{"ph": "M", "pid": 100, "tid": 0, "name": "thread_name", "args": {"name": "lane"}},
                   {"ph": "X", "pid": 100, "tid": 0, "name": "a", "ts": 0.0, "dur": 2.0},
                   {"ph": "X", "pid": 100, "tid": 0, "name": "b", "ts": 1.0, "dur": 2.0}]
    with pytest.raises(AssertionError):
        validate({"traceEvents": overlapping})


# ---------------------------------------------------------------- FWDNXT
def _fwdnxt(path: Path, trace: Path) -> tuple[FWDNXT, np.ndarray]:
    ie = FWDNXT()
    count = ie.Init(str(path), "")
    ie.SetFlag("trace", str(trace))
    return ie, np.empty(count, np.float32)


@pytest.mark.parametrize("which", ["one", "split"])
def test_fwdnxt_run_sw_writes_the_device_timeline_ending_at_hwtime(binaries, tmp_path, which):
    trace = tmp_path / "run.json"
    ie, result = _fwdnxt(binaries[which], trace)
    ie.Run_sw(_images(1)[0], result)
    doc = validate(trace)
    assert device_end_us(doc) == pytest.approx(ie.GetInfo("hwtime") * 1e3, rel=1e-9)
    assert doc["otherData"]["hwtime_ms"] == pytest.approx(ie.GetInfo("hwtime"), rel=1e-12)
    lanes = thread_names(doc)
    assert "cluster 0 compute" in lanes and "cluster 0 DMA load" in lanes
    model = read_binary(binaries[which])
    copies = any(e.phase >= 0 for segment in model.device_segments for e in segment.exchanges)
    assert ("host link" in lanes) == copies
    cards = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    assert {f"card {c} (modelled clock)" for c in range(model.config.cards)} <= cards
    assert {e["args"]["where"] for e in host_events(doc) if e["name"].startswith("segment")} >= {"device (simulator)"}
    expected = np.empty_like(result)
    plain = FWDNXT()
    plain.Init(str(binaries[which]), "")
    plain.Run_sw(_images(1)[0], expected)
    np.testing.assert_array_equal(result, expected)  # tracing changes nothing the run computes


def test_fwdnxt_run_th_and_get_result_write_their_own_runs(binaries, tmp_path):
    trace = tmp_path / "run.json"
    ie, result = _fwdnxt(binaries["one"], trace)
    ie.Run_th(_images(1)[0], result)
    doc = validate(trace)
    assert all(e["pid"] == HOST_PID for e in doc["traceEvents"] if e["ph"] == "X"), "Run_th used no device"
    assert {e["args"].get("where") for e in host_events(doc)} >= {"CPU (float reference)"}
    assert any(e["args"].get("kernel") for e in host_events(doc)), "the reference's kernels are on a track"
    trace.unlink()
    assert ie.PutInput(_images(1, seed=2)[0], "tag")
    assert ie.GetResult(result) == "tag"
    doc = validate(trace)
    assert device_end_us(doc) == pytest.approx(ie.GetInfo("hwtime") * 1e3, rel=1e-9)
    assert doc["otherData"]["call"] == "GetResult"
    ie.SetFlag("trace", "")
    trace.unlink()
    ie.Run_sw(_images(1)[0], result)
    assert not trace.exists()


def test_fwdnxt_trace_names_an_unwritable_file_and_keeps_the_results(binaries, tmp_path):
    ie = FWDNXT()
    count = ie.Init(str(binaries["one"]), "")
    missing = tmp_path / "no" / "run.json"
    with pytest.raises(FWDNXTError, match=f"SetFlag: trace {str(missing)!r}"):
        ie.SetFlag("trace", str(missing))
    folder = tmp_path / "gone"
    folder.mkdir()
    ie.SetFlag("trace", str(folder / "run.json"))
    folder.rmdir()  # writable when set, not when the run ends
    result = np.zeros(count, np.float32)
    with pytest.raises(FWDNXTError, match=f"Run_sw: trace {str(folder / 'run.json')!r} could not be written.*"
                                          "results are in the result buffer"):
        ie.Run_sw(_images(1)[0], result)
    expected = np.empty_like(result)
    ie.SetFlag("trace", "")
    ie.Run_sw(_images(1)[0], expected)
    np.testing.assert_array_equal(result, expected)


# ---------------------------------------------------------------- Inference Engine
def test_ie_requests_with_perf_count_write_their_last_runs(binaries, tmp_path):
    net = IENetwork(model=str(binaries["one"]))
    plugin = IEPlugin("FPGA")
    plugin.set_config({"PERF_COUNT": "YES", "TESSERA_TRACE": str(tmp_path / "request{request}.json")})
    exec_net = plugin.load(net, num_requests=2)
    name = next(iter(net.inputs))
    for index, image in enumerate(_images(2, seed=4)):
        exec_net.start_async(index, {name: image})
    assert [request.wait() for request in exec_net.requests] == [StatusCode.OK, StatusCode.OK]
    hwtime_us = Engine(net._binary).device.hwtime_ms * 1e3
    for index in range(2):
        doc = validate(tmp_path / f"request{index}.json")
        assert device_end_us(doc) == pytest.approx(hwtime_us, rel=1e-9)
        assert doc["otherData"]["request"] == index
        assert host_events(doc), "the request's segments are on the host's tracks"


def test_ie_trace_key_is_checked_and_needs_perf_count(binaries, tmp_path):
    plugin = IEPlugin("FPGA")
    missing = str(tmp_path / "no" / "t.json")
    with pytest.raises(InferenceEngineError, match=f"TESSERA_TRACE {missing!r}"):
        plugin.set_config({"TESSERA_TRACE": missing})
    plugin.set_config({"TESSERA_TRACE": str(tmp_path / "t.json")})
    net = IENetwork(model=str(binaries["one"]))
    with pytest.warns(RuntimeWarning, match="PERF_COUNT"):
        exec_net = plugin.load(net)
    exec_net.infer({next(iter(net.inputs)): _images(1)[0]})
    assert not (tmp_path / "t.json").exists()


def test_ie_failed_trace_write_is_the_requests_error_with_its_outputs_kept(binaries, tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    plugin = IEPlugin("FPGA")
    plugin.set_config({"PERF_COUNT": "YES", "TESSERA_TRACE": str(folder / "t.json")})
    net = IENetwork(model=str(binaries["one"]))
    exec_net = plugin.load(net)
    folder.rmdir()
    request = exec_net.requests[0]
    with pytest.raises(InferenceEngineError, match=f"request 0: TESSERA_TRACE {str(folder / 't.json')!r}"):
        request.infer({next(iter(net.inputs)): _images(1)[0]})
    assert request.outputs and all(np.isfinite(v).all() for v in request.outputs.values())


# ---------------------------------------------------------------- a shared recorder
def test_concurrent_runs_share_a_recorder_on_tracks_of_their_own(binaries):
    engine = Engine(read_binary(binaries["one"]))
    engine.run({engine.model.inputs[0].name: _images(1)[0]})  # kernels compiled before the race
    recorder = HostRecorder()

    def run(image: np.ndarray) -> None:
        engine.run({engine.model.inputs[0].name: image}, recorder=recorder)

    threads = [threading.Thread(target=run, args=(image,), name=f"runner-{i}")
               for i, image in enumerate(_images(2, seed=6))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    doc = validate(trace_document(engine.timeline, recorder.spans))
    segments = defaultdict(int)
    for event in host_events(doc):
        if event["args"].get("where"):
            segments[event["cat"]] += 1
    assert set(segments) == {"runner-0: segments", "runner-1: segments"}
    assert len(set(segments.values())) == 1 and len(engine.model.segments) in segments.values()


# ---------------------------------------------------------------- tessera-infer
def test_tessera_infer_trace_has_each_images_stages_and_one_device_run(binaries, tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image")
    from runtime.app.infer import main

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(8)
    for i in range(5):
        pil.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    trace = tmp_path / "infer.json"
    assert main(["--xclbin", str(binaries["one"]), "--img_path", str(folder), "--profile", "--max_bs", "2",
                 "--preprocess_workers", "2", "--trace", str(trace)]) == 0
    doc = validate(trace)
    tracks = thread_names(doc, HOST_PID)
    assert {"upload", "device", "download"} <= set(tracks) and "pre-processing 1" in tracks
    pre = [e for e in host_events(doc) if e["cat"].startswith("pre-processing")]
    assert sorted(e["name"] for e in pre) == [f"im{i}.png" for i in range(5)]
    runs = [e for e in host_events(doc) if e["cat"] == "device"]
    assert sorted(image for e in runs for image in e["args"]["images"]) == [f"im{i}.png" for i in range(5)]
    hwtime_us = Engine(read_binary(binaries["one"])
                       ).device.hwtime_ms * 1e3
    assert device_end_us(doc) == pytest.approx(hwtime_us, rel=1e-9)
    capsys.readouterr()
    assert main(["--xclbin", str(binaries["one"]), "--img_path", str(folder), "--trace",
                 str(tmp_path / "no" / "t.json")]) == 1
    assert f"--trace {str(tmp_path / 'no' / 't.json')!r}" in capsys.readouterr().err


# ---------------------------------------------------------------- tessera run
def test_tessera_run_trace_writes_the_warm_run(binaries, tmp_path, capsys):
    from compiler.cli import main

    trace = tmp_path / "cli.json"
    assert main(["run", str(binaries["split"]), "--trace", str(trace), "--no-compare"]) == 0
    assert f"wrote the trace of the warm run to {trace}" in capsys.readouterr().out
    doc = validate(trace)
    hwtime_us = Engine(read_binary(binaries["split"])
                       ).device.hwtime_ms * 1e3
    assert device_end_us(doc) == pytest.approx(hwtime_us, rel=1e-9)
    assert doc["otherData"]["command"] == "tessera run"
    bad = tmp_path / "no" / "t.json"
    assert main(["run", str(binaries["one"]), "--trace", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err
    assert main(["run", str(binaries["one"]), "--cpu", "--trace", str(trace)]) == 1
    assert "--cpu" in capsys.readouterr().err
    assert os.path.exists(trace)

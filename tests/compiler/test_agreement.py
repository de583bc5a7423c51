"""Agreement as detections (compiler/agreement.py): the decoders and the
matcher on hand-made outputs, the recogniser on the family models, and the
reports that print it."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.agreement import (
    Agreement,
    Box,
    Head,
    centernet_boxes,
    db_boxes,
    match,
    nms,
    peaks,
    recognise,
    yolo_boxes,
)
from compiler.errors import QuantizationError


def _yolo_rows(boxes, classes=3, anchors=6):
    """[4 + classes, anchors] rows holding ``boxes`` ((cx, cy, w, h, class, score) each), the other anchors silent."""
    rows = np.zeros((4 + classes, anchors))
    for n, (cx, cy, w, h, c, score) in enumerate(boxes):
        rows[:4, n] = cx, cy, w, h
        rows[4 + c, n] = score
    return rows


def test_nms_keeps_the_best_of_overlapping_boxes_of_a_class():
    rows = _yolo_rows([(20, 20, 10, 10, 1, 0.6), (21, 20, 10, 10, 1, 0.9), (21, 20, 10, 10, 2, 0.5),
                       (50, 50, 8, 8, 1, 0.2)])
    found = yolo_boxes(rows, classes=3)
    # the 0.9 box of class 1 suppresses the 0.6 one; class 2's box stays; 0.2 is under the score
    assert [(b.label, round(b.score, 2)) for b in found] == [(1, 0.9), (2, 0.5)]
    assert found[0] == Box(1, 16.0, 15.0, 26.0, 25.0, 0.9)
    assert len(nms([Box(0, 0, 0, 10, 10, 0.5), Box(0, 6, 0, 16, 10, 0.4)], 0.7)) == 2  # IoU 0.25: both kept


def test_a_missing_detection_lowers_recall_and_an_extra_one_precision():
    head = Head("yolo", ("out",), "hand-made", classes=3)
    reference = [(20, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 1, 0.8)]
    missing = Agreement(head)
    missing.update({"out": _yolo_rows(reference)[None]}, {"out": _yolo_rows(reference[:1])[None]})
    assert (missing.precision, missing.recall) == (1.0, 0.5)
    extra = Agreement(head)
    extra.update({"out": _yolo_rows(reference)[None]},
                 {"out": _yolo_rows(reference + [(60, 60, 6, 6, 2, 0.7)])[None]})
    assert (extra.precision, extra.recall) == (2 / 3, 1.0)
    assert "precision 66.7 %, recall 100.0 % over 1 inputs (yolo, IoU 0.5" in extra.line()
    shifted = Agreement(head)  # moved by half its size: IoU 1/3, not the same detection; nor another class
    shifted.update({"out": _yolo_rows(reference)[None]},
                   {"out": _yolo_rows([(25, 20, 10, 10, 0, 0.9), (40, 40, 10, 10, 2, 0.8)])[None]})
    assert shifted.matched == 0 and shifted.f1 == 0.0


def test_the_matcher_uses_each_test_box_once_best_reference_first():
    a, b = Box(0, 0, 0, 10, 10, 0.9), Box(0, 1, 0, 11, 10, 0.5)
    assert match([a, b], [Box(0, 0, 0, 10, 10)]) == 1
    assert match([a, b], [Box(0, 0, 0, 10, 10), Box(0, 1, 0, 11, 10)]) == 2
    assert match([a], [Box(0, 3, 0, 13, 10)], radius=2.0) == 0 and match([a], [Box(0, 1, 1, 11, 11)], radius=2.0) == 1


def test_db_regions_are_boxes_in_pixels():
    prob = np.zeros((8, 16))
    prob[1:3, 2:7] = 0.9   # a line
    prob[5, 10] = 0.8      # one cell: too small
    prob[5:7, 12:14] = 0.35
    assert db_boxes(prob, (4.0, 4.0)) == [Box(0, 8.0, 4.0, 28.0, 12.0, 0.9), Box(0, 48.0, 20.0, 56.0, 28.0, 0.35)]


def test_centernet_peaks_are_local_maxima_over_the_score():
    hm = np.zeros((2, 6, 6))
    hm[0, 2, 2], hm[0, 2, 3], hm[1, 4, 1], hm[1, 0, 5] = 0.9, 0.5, 0.6, 0.2
    assert peaks(hm) == [(0, 2, 2, 0.9), (1, 4, 1, 0.6)]
    wh = np.full((2, 6, 6), 2.0)
    reg = np.full((2, 6, 6), 0.25)
    box = centernet_boxes(hm, (4.0, 4.0), wh, reg, wh_scale=4.0)[0]
    assert box == Box(0, 5.0, 5.0, 13.0, 13.0, 0.9)


def test_classifier_agreement_is_top1_and_top5():
    a = Agreement(Head("classify", ("p",), "hand-made", classes=8))
    logits = np.arange(8.0)[None]
    a.update({"p": logits}, {"p": logits})
    a.update({"p": logits}, {"p": logits[:, ::-1]})                    # float's class is int8's last
    a.update({"p": logits}, {"p": np.array([[0, 0, 0, 7.5, 0, 0, 0, 7.0]])})  # second
    assert (a.top1, a.top5, a.samples) == (1, 2, 3)
    assert "top-1 33.3 %, top-5 66.7 %" in a.line()


def test_a_named_task_the_model_has_no_output_for_is_named():
    from compiler.frontend import import_onnx
    from compiler.zoo.families import centernet

    graph = import_onnx(centernet(image=32, classes=4))
    with pytest.raises(QuantizationError, match=r"task 'yolo': no output .* the outputs are hm \[1, 4, 8, 8\]"):
        recognise(graph, "yolo")
    with pytest.raises(QuantizationError, match="not one of"):
        recognise(graph, "boxes")
    (head,) = recognise(graph)
    assert head.task == "centernet" and head.outputs == ("hm", "wh", "reg") and head.stride == (4.0, 4.0)


def test_a_yolov8_is_measured_part_by_part_and_as_detections(tmp_path, capsys):
    """YOLOv8 (64x64, seeded, 8 classes) through `tessera quantize
    --target-snr`: the target, the comparison and the agreement name
    output0's boxes and class scores apart, and the recogniser reads it as
    YOLO (a figure, over random weights: the anchors' scores are all near 0.5)."""
    import onnx

    from compiler.cli import main as tessera
    from compiler.zoo.images import image_crops
    from compiler.zoo.ultralytics import yolov8

    onnx.save(yolov8(64, classes=8), tmp_path / "yolo.onnx")
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, x in enumerate(image_crops(4, 64, seed=1)):
        np.save(folder / f"{i:02d}.npy", x)
    assert tessera(["quantize", str(tmp_path / "yolo.onnx"), "--calibration", str(folder), "--count", "4",
                    "--samples", "2", "--target-snr", "40", "--no-layers"]) == 0
    out = capsys.readouterr().out
    target = next(line for line in out.splitlines() if line.startswith("target SNR 40 dB"))
    assert "output0[0:4]" in target and "output0[4:12]" in target, out
    assert "output output0[0:4]: SNR" in out and "output output0[4:12]: SNR" in out, out
    line = next(line for line in out.splitlines() if line.startswith("output0: detections agree"))
    assert "over 2 inputs (yolo, IoU 0.5" in line, line
    precision = float(line.split("precision ")[1].split(" %")[0])
    assert 50.0 <= precision <= 100.0, line


def test_regions_are_scipys_4_connected_labels_without_scipy():
    """The DB decoder's labelling (NumPy only: a core install has no SciPy)
    partitions a mask's cells as scipy.ndimage.label does, on random masks
    and on a one-region snake whose path is the whole map."""
    from scipy import ndimage

    from compiler.agreement import regions

    rng = np.random.default_rng(0)
    snake = np.zeros((21, 21), bool)
    snake[::2] = True
    snake[1::4, -1] = snake[3::4, 0] = True
    masks = [rng.random(rng.integers(1, 24, 2)) < rng.random() for _ in range(60)] + [snake]
    for mask in masks:
        rows, cols, region = regions(mask)
        labels, count = ndimage.label(mask)
        assert len(set(zip(labels[rows, cols].tolist(), region.tolist()))) == count == len(set(region.tolist()))
        assert region.size == 0 or list(dict.fromkeys(region.tolist())) == list(range(count))  # by first cell
    assert regions(snake)[2].max() == 0

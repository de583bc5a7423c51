"""Agreement as a model's users read its outputs: a quantized model's
detections (boxes, text regions, peaks) or classes against the float
model's, after each side is decoded the way the task decodes it.

Tasks (:data:`TASKS`), recognised from the float graph's outputs
(:func:`recognise`: by shape and producing op, conservatively) or named
by the user (``task=``):

- ``yolo``: Ultralytics' YOLOv8/YOLO11 output ``[1, 4+C(+M), N]`` (boxes as
  centre and size in input pixels, C sigmoid class scores, M mask
  coefficients; or transposed, ``[1, N, 4+C(+M)]``). Recognised when the
  output is a Concat (passes/quant/head_grids.output_parts) whose first part
  has 4 rows and whose second is a Sigmoid's. Decoded as Ultralytics
  predicts: each anchor's best class over :data:`YOLO_SCORE`, class-wise
  NMS at IoU :data:`YOLO_NMS`.
- ``db``: a DB text detector's probability map ``[1, 1, H, W]`` made by a
  Sigmoid: regions of cells over :data:`DB_THRESHOLD` (4-connected, two
  cells or more), each region's box in input pixels.
- ``centernet``: a heatmap ``[1, C, H, W]`` made by a Sigmoid beside an
  output of 2 channels at its resolution (CenterNet, CenterFace): peaks
  (the largest of their 3x3 neighbourhood) over :data:`CENTERNET_SCORE`;
  with outputs named ``wh`` and ``reg`` (CenterNet's export) they are boxes
  (centre ``(cell + reg) * stride``, size ``wh``: in cells times the
  stride, as CenterNet has them, unless read so the float model's boxes
  would be larger than the input, when they are pixels), else peaks
  matched by class within :data:`PEAK_RADIUS` cells.
- ``classify``: probabilities ``[1, K]`` (``[1, K, 1, 1]``), K >= 2, made
  by a Softmax, or the logits of a model's only output made by a Gemm,
  MatMul or Conv (and its bias): top-1 and top-5 agreement
  (the float model's class is the int8's first, or among its first five).

Detections are matched one to one (:func:`match`: the float model's, best
score first, each to the unused int8 detection of its class with the
highest IoU, at least :data:`IOU`): precision is the matched share of the
int8 detections, recall that of the float ones (each 100 % when there is
nothing to match), F1 their harmonic mean. :class:`Agreement` accumulates
them over inputs; :func:`agreements` starts one per recognised head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from compiler.errors import QuantizationError
from ir.graph import Graph, Value

TASKS = ("yolo", "db", "centernet", "classify")
IOU = 0.5
"""IoU at which two detections are the same."""
YOLO_SCORE = 0.25
"""Class score over which a YOLO anchor is a detection (Ultralytics' predict default)."""
YOLO_NMS = 0.7
"""IoU over which NMS drops the lower-scored box of a class (Ultralytics' default)."""
DB_THRESHOLD = 0.3
"""Probability over which a DB map's cell is text (DB's binarisation threshold)."""
CENTERNET_SCORE = 0.3
"""Heatmap value over which a peak is a detection."""
PEAK_RADIUS = 1.5
"""Cells within which two peaks of a class are the same detection, without size heads."""
YOLO_MAX_DET = 300
"""Detections kept per image (Ultralytics' max_det)."""
TOP_K = 5


@dataclass(frozen=True)
class Box:
    """A detection (or a ground-truth box): corners in input pixels."""

    label: int
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0


def iou(a: Box, b: Box) -> float:
    """Intersection over union."""
    w = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    h = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = w * h
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def _corners(boxes: Sequence[Box]) -> np.ndarray:
    return np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes], np.float64).reshape(-1, 4)


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """:func:`iou` of every box of ``a`` with every box of ``b``: [len(a), len(b)]."""
    return _ious(_corners(a), _corners(b))


def _ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p, q = a[:, None], b[None]
    w = np.clip(np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0]), 0.0, None)
    h = np.clip(np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1]), 0.0, None)
    inter = w * h
    union = ((p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1]) + (q[..., 2] - q[..., 0]) * (q[..., 3] - q[..., 1])
             - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match(reference: Sequence[Box], test: Sequence[Box], threshold: float = IOU, radius: float | None = None) -> int:
    """How many boxes of ``reference`` a box of ``test`` of the same label
    matches, each test box used once: the reference's best-scored first,
    each to the unused test box of highest IoU, when at least ``threshold``
    (with ``radius``: to the nearest centre, when within ``radius``)."""
    if not reference or not test:
        return 0
    if radius is None:
        closeness, enough = iou_matrix(reference, test), threshold
    else:
        p, q = _corners(reference), _corners(test)
        centres = ((p[:, None, :2] + p[:, None, 2:]) - (q[None, :, :2] + q[None, :, 2:])) / 2
        closeness, enough = -np.hypot(centres[..., 0], centres[..., 1]), -radius
    same = np.array([b.label for b in reference])[:, None] == np.array([b.label for b in test])[None]
    closeness = np.where(same, closeness, -np.inf)
    matched = 0
    for i in sorted(range(len(reference)), key=lambda k: -reference[k].score):
        j = int(np.argmax(closeness[i]))
        if closeness[i, j] >= enough:
            closeness[:, j] = -np.inf
            matched += 1
    return matched


def agreement(reference: list[Box], test: list[Box], threshold: float = IOU) -> tuple[int, int]:
    """(boxes of ``reference`` matched by a box of ``test`` (:func:`match`); boxes of ``reference``)."""
    return match(reference, test, threshold), len(reference)


# ---------------------------------------------------------------- decoders


def nms(boxes: Sequence[Box], threshold: float = YOLO_NMS, limit: int | None = None) -> list[Box]:
    """Class-wise non-maximum suppression: the boxes, best score first, each
    dropped when it overlaps a kept box of its class by more than
    ``threshold``; at most ``limit`` kept."""
    ranked = sorted(boxes, key=lambda b: -b.score)
    if not ranked:
        return []
    labels, corners = np.array([b.label for b in ranked]), _corners(ranked)
    alive = np.ones(len(ranked), bool)
    kept: list[Box] = []
    for i in range(len(ranked)):
        if not alive[i]:
            continue
        kept.append(ranked[i])
        if limit is not None and len(kept) == limit:
            break
        rest = np.flatnonzero(alive[i + 1:] & (labels[i + 1:] == labels[i])) + i + 1
        if rest.size:
            overlaps = _ious(corners[i:i + 1], corners[rest])[0]
            alive[rest[overlaps > threshold]] = False
    return kept


def yolo_boxes(rows: np.ndarray, classes: int, score: float = YOLO_SCORE, overlap: float = YOLO_NMS) -> list[Box]:
    """Ultralytics' decoding of one image's ``[4 + classes (+ masks), N]``
    output: centre x, y, width, height in pixels, then class scores; each
    anchor's best class over ``score``, class-wise NMS at ``overlap``, the
    best :data:`YOLO_MAX_DET` kept."""
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[0] < 4 + classes:
        raise QuantizationError(f"a YOLO output needs [4 + {classes} classes, anchors] rows, got {list(rows.shape)}")
    scores = rows[4:4 + classes]
    label = np.argmax(scores, axis=0)
    best = scores[label, np.arange(scores.shape[1])]
    boxes = []
    for n in np.flatnonzero(best > score):
        cx, cy, w, h = rows[:4, n]
        boxes.append(Box(int(label[n]), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, float(best[n])))
    return nms(boxes, overlap, YOLO_MAX_DET)


def db_boxes(probability: np.ndarray, stride: tuple[float, float], threshold: float = DB_THRESHOLD) -> list[Box]:
    """DB's decoding of one ``[H, W]`` probability map: each 4-connected
    region over ``threshold`` of two cells or more a text box, in input
    pixels (``stride``: pixels per cell, rows and columns), scored by its
    highest cell."""
    prob = np.asarray(probability, np.float64)
    rows, cols, region = regions(prob > threshold)
    count = int(region.max()) + 1 if region.size else 0
    cells = np.bincount(region, minlength=count)
    top, left = np.full(count, prob.shape[0]), np.full(count, prob.shape[1])
    bottom, right, score = np.zeros(count, np.int64), np.zeros(count, np.int64), np.full(count, -np.inf)
    np.minimum.at(top, region, rows)
    np.minimum.at(left, region, cols)
    np.maximum.at(bottom, region, rows + 1)
    np.maximum.at(right, region, cols + 1)
    np.maximum.at(score, region, prob[rows, cols])
    return [Box(0, left[k] * stride[1], top[k] * stride[0], right[k] * stride[1], bottom[k] * stride[0],
                float(score[k])) for k in range(count) if cells[k] >= 2]


def regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 4-connected regions of a 2-D boolean ``mask``: (rows, columns,
    region) of its set cells in row-major order, regions numbered from 0 in
    the order of their first cell. Label propagation with pointer jumping
    in NumPy (no SciPy in a core install): each round hooks every edge's
    larger root under the smaller, then flattens the trees."""
    mask = np.asarray(mask, bool)
    index = np.arange(mask.size).reshape(mask.shape)
    across, down = mask[:, :-1] & mask[:, 1:], mask[:-1] & mask[1:]
    a = np.concatenate([index[:, :-1][across], index[:-1][down]])
    b = np.concatenate([index[:, 1:][across], index[1:][down]])
    label = np.arange(mask.size)
    while True:
        low = np.minimum(label[a], label[b])
        np.minimum.at(label, label[a], low)
        np.minimum.at(label, label[b], low)
        while not np.array_equal(jumped := label[label], label):
            label = jumped
        if np.array_equal(label[a], label[b]):
            break
    rows, cols = np.nonzero(mask)
    _, region = np.unique(label[rows * mask.shape[1] + cols], return_inverse=True)
    return rows, cols, region.reshape(-1)


def peaks(heatmap: np.ndarray, score: float = CENTERNET_SCORE) -> list[tuple[int, int, int, float]]:
    """CenterNet's peaks of a ``[C, H, W]`` heatmap: (class, row, column,
    value) of the cells over ``score`` that are the largest of their 3x3
    neighbourhood (a max-pool NMS)."""
    hm = np.asarray(heatmap, np.float64)
    _, height, width = hm.shape
    padded = np.pad(hm, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max([padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], axis=0)
    return [(int(c), int(y), int(x), float(hm[c, y, x]))
            for c, y, x in zip(*np.nonzero((hm >= pooled) & (hm > score)))]


def centernet_boxes(heatmap: np.ndarray, stride: tuple[float, float], wh: np.ndarray | None = None,
                    reg: np.ndarray | None = None, wh_scale: float = 1.0, score: float = CENTERNET_SCORE) -> list[Box]:
    """CenterNet's decoding of one image's heads: a box per peak of
    ``heatmap`` [C, H, W], centred at (cell + ``reg``) * stride, of size
    ``wh`` * ``wh_scale`` (pixels); without ``wh`` a point at the centre."""
    boxes = []
    for c, y, x, value in peaks(heatmap, score):
        dx, dy = (float(reg[0, y, x]), float(reg[1, y, x])) if reg is not None else (0.5, 0.5)
        cx, cy = (x + dx) * stride[1], (y + dy) * stride[0]
        w, h = (float(wh[0, y, x]) * wh_scale, float(wh[1, y, x]) * wh_scale) if wh is not None else (0.0, 0.0)
        boxes.append(Box(c, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, value))
    return boxes


def top_k(scores: np.ndarray, k: int = TOP_K) -> list[int]:
    """The ``k`` highest-scored classes, best first."""
    flat = np.asarray(scores, np.float64).ravel()
    return [int(i) for i in np.argsort(-flat, kind="stable")[:k]]


# ---------------------------------------------------------------- recognition


@dataclass(frozen=True)
class Head:
    """A recognised (or named) task head: its ``task``, the outputs it reads
    (the first is the one reported), ``how`` it was recognised, and what its
    decoding needs."""

    task: str
    outputs: tuple[str, ...]
    how: str
    classes: int = 0
    """yolo: C; classify: K."""
    axis: int = 1
    """yolo: the output axis of the 4 + C (+ M) rows."""
    stride: tuple[float, float] = (1.0, 1.0)
    """db, centernet: input pixels per map cell (rows, columns)."""
    sizes: bool = False
    """centernet: the second and third outputs are ``wh`` and ``reg``."""


_THROUGH = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast"})


def _maker(value: Value):
    """The node that computed ``value``, back through shape-only ops (None for an input)."""
    node = value.producer
    while node is not None and node.op in _THROUGH:
        node = node.inputs[0].producer
    return node


def _made_by(value: Value) -> str | None:
    node = _maker(value)
    return None if node is None else node.op


def _input_size(graph: Graph) -> tuple[int, int] | None:
    """(height, width) of the model's image input (the first rank-4 one)."""
    for v in graph.inputs:
        shape = v.type.shape
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
            return shape[2], shape[3]
    return None


def _stride(graph: Graph, shape) -> tuple[float, float]:
    size = _input_size(graph)
    return (1.0, 1.0) if size is None else (size[0] / shape[2], size[1] / shape[3])


def _static(value: Value) -> tuple[int, ...] | None:
    shape = tuple(value.type.shape)
    return shape if shape and all(isinstance(d, int) for d in shape) and shape[0] == 1 else None


def recognise(graph: Graph, task: str | None = None) -> list[Head]:
    """The task heads among ``graph``'s outputs (the float graph): every one
    recognised, or with ``task`` (one of :data:`TASKS`) those of that task,
    read more loosely (the producing op is not required); none with
    ``task="none"``. A named task
    with no output of its shape is an error naming the outputs."""
    if task == "none":
        return []
    if task is not None and task not in TASKS:
        raise QuantizationError(f"task {task!r} is not one of {list(TASKS)} (or 'none')")
    heads: list[Head] = []
    used: set[str] = set()
    for kind in (task,) if task else ("yolo", "centernet", "db", "classify"):
        for head in _RECOGNISERS[kind](graph, task is not None):
            if not used.intersection(head.outputs):
                heads.append(head)
                used.update(head.outputs)
    order = [v.name for v in graph.outputs]
    heads.sort(key=lambda h: order.index(h.outputs[0]))
    if task is not None and not heads:
        shapes = ", ".join(f"{v.name} {list(v.type.shape)}" for v in graph.outputs)
        raise QuantizationError(f"task {task!r}: no output of the model has the shape it decodes ({_SHAPES[task]}); "
                                f"the outputs are {shapes}")
    return heads


_SHAPES = {"yolo": "[1, 4+C(+M), N] or [1, N, 4+C(+M)]", "db": "[1, 1, H, W]", "centernet": "[1, C, H, W]",
           "classify": "[1, K] or [1, K, 1, 1]"}


def _yolo(graph: Graph, named: bool) -> list[Head]:
    from passes.quant.head_grids import output_parts

    parts, heads = output_parts(graph), []
    for out in graph.outputs:
        shape = _static(out)
        if shape is None or len(shape) != 3:
            continue
        found = parts.get(out.name)
        if found is not None and found.sources and len(found.sources) in (2, 3) and found.axis in (1, 2) \
                and len(found.channels[0]) == 4 and _made_by(found.sources[1]) == "Sigmoid":
            classes = len(found.channels[1])
            heads.append(Head("yolo", (out.name,), f"[1, 4+{classes}"
                              + (f"+{len(found.channels[2])}" if len(found.channels) == 3 else "")
                              + ", N] = Concat(boxes, Sigmoid(scores)" + (", coefficients)" if len(found.channels)
                                                                          == 3 else ")"),
                              classes=classes, axis=found.axis))
        elif named and max(shape[1], shape[2]) >= 5:
            axis = 1 if shape[1] <= shape[2] else 2
            heads.append(Head("yolo", (out.name,), f"named: {shape[axis] - 4} classes along axis {axis}",
                              classes=shape[axis] - 4, axis=axis))
    return heads


def _maps(graph: Graph) -> list[tuple[Value, tuple[int, ...]]]:
    return [(v, s) for v in graph.outputs if (s := _static(v)) is not None and len(s) == 4 and s[2] * s[3] > 1]


def _centernet(graph: Graph, named: bool) -> list[Head]:
    maps, heads = _maps(graph), []
    sigmoid = [(v, s) for v, s in maps if _made_by(v) == "Sigmoid"]
    candidates = sigmoid if sigmoid or not named else \
        [(v, s) for v, s in maps if v.name.lower() in ("hm", "heatmap", "heat")] or maps[:1]
    for heat, shape in candidates:
        beside = {v.name: v for v, s in maps if v is not heat and s[1] == 2 and s[2:] == shape[2:]}
        if not beside and not named:
            continue
        sizes = "wh" in beside and "reg" in beside
        outputs = (heat.name, "wh", "reg") if sizes else (heat.name,)
        why = "named" if named else "Sigmoid heatmap beside 2-channel heads"
        heads.append(Head("centernet", outputs, f"{why}: {heat.name} [1, {shape[1]}, {shape[2]}, {shape[3]}]"
                          + (", sizes wh, offsets reg" if sizes else ", peaks within "
                             f"{PEAK_RADIUS:g} cells"), classes=shape[1], stride=_stride(graph, shape), sizes=sizes))
    return heads


def _db(graph: Graph, named: bool) -> list[Head]:
    return [Head("db", (v.name,), ("named" if named else "Sigmoid") + f": probability map [1, 1, {s[2]}, {s[3]}]",
                 stride=_stride(graph, s))
            for v, s in _maps(graph) if s[1] == 1 and (named or _made_by(v) == "Sigmoid")]


_LINEAR = frozenset({"Gemm", "MatMul", "Conv"})
"""A model's only output made by one of these (its bias added or not) is a classifier's logits."""


def _classify(graph: Graph, named: bool) -> list[Head]:
    heads = []
    for v in graph.outputs:
        shape = _static(v)
        if shape is None or len(shape) not in (2, 4) or any(d != 1 for d in shape[2:]) or shape[1] < 2:
            continue
        node = _maker(v)
        op = None if node is None else node.op
        if op == "Add" and any(u is not None and _made_by(u) in _LINEAR for u in node.inputs):
            op = next(_made_by(u) for u in node.inputs if u is not None and _made_by(u) in _LINEAR)
        if named or op in ("Softmax", "LogSoftmax") or (op in _LINEAR and len(graph.outputs) == 1):
            heads.append(Head("classify", (v.name,), f"{'named' if named else op}: [1, {shape[1]}] scores",
                              classes=shape[1]))
    return heads


_RECOGNISERS = {"yolo": _yolo, "db": _db, "centernet": _centernet, "classify": _classify}


# ---------------------------------------------------------------- agreement


@dataclass
class Agreement:
    """A head's agreement over the inputs seen: detections (or regions, or
    peaks) of the float model and of the tested one, and those matched; or,
    for a classifier, the inputs whose float class is the tested model's
    first, or among its first :data:`TOP_K`."""

    head: Head
    samples: int = 0
    reference: int = 0
    test: int = 0
    matched: int = 0
    top1: int = 0
    top5: int = 0

    def update(self, reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray]) -> None:
        """Fold in one input's outputs of the float model and of the tested
        one (by output name; a batch image by image)."""
        for b in range(np.shape(reference[self.head.outputs[0]])[0]):
            self._update({k: np.asarray(reference[k])[b:b + 1] for k in self.head.outputs},
                         {k: np.asarray(test[k])[b:b + 1] for k in self.head.outputs})

    def _update(self, reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray]) -> None:
        self.samples += 1
        if self.head.task == "classify":
            expected = top_k(reference[self.head.outputs[0]], 1)[0]
            ranked = top_k(test[self.head.outputs[0]])
            self.top1 += ranked[0] == expected
            self.top5 += expected in ranked
            return
        scale = _wh_scale(self.head, reference)
        truth, found = decode(self.head, reference, scale), decode(self.head, test, scale)
        radius = PEAK_RADIUS * min(self.head.stride) if self.head.task == "centernet" and not self.head.sizes \
            else None
        self.reference += len(truth)
        self.test += len(found)
        self.matched += match(truth, found, IOU, radius)

    @property
    def precision(self) -> float:
        return self.matched / self.test if self.test else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def score(self) -> float:
        """One figure: top-1 agreement for a classifier, F1 otherwise."""
        return self.top1 / max(self.samples, 1) if self.head.task == "classify" else self.f1

    def line(self) -> str:
        """``output0: detections agree: precision 98.5 %, recall 97.9 % over 8 inputs (yolo, IoU 0.5)``."""
        name, over = self.head.outputs[0], f"over {self.samples} inputs"
        if self.head.task == "classify":
            n = max(self.samples, 1)
            return (f"{name}: classes agree: top-1 {100 * self.top1 / n:.1f} %, top-{TOP_K} "
                    f"{100 * self.top5 / n:.1f} % {over} (classify)")
        counts = f"{self.reference} float, {self.test} int8, {self.matched} matched"
        if self.head.task == "db":
            return (f"{name}: text regions agree: F1 {100 * self.f1:.1f} % (precision {100 * self.precision:.1f} %, "
                    f"recall {100 * self.recall:.1f} %) {over} (db, threshold {DB_THRESHOLD:g}, IoU {IOU:g}; "
                    f"{counts})")
        how = f"within {PEAK_RADIUS:g} cells" if self.head.task == "centernet" and not self.head.sizes else \
            f"IoU {IOU:g}"
        return (f"{name}: detections agree: precision {100 * self.precision:.1f} %, recall {100 * self.recall:.1f} % "
                f"{over} ({self.head.task}, {how}; {counts})")

    def record(self) -> dict:
        """The figures as a JSON-able dict."""
        record = {"task": self.head.task, "outputs": list(self.head.outputs), "recognised": self.head.how,
                  "samples": self.samples}
        if self.head.task == "classify":
            n = max(self.samples, 1)
            return {**record, "top1": self.top1 / n, "top5": self.top5 / n}
        return {**record, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "float_detections": self.reference, "test_detections": self.test, "matched": self.matched}


def agreements(graph: Graph, task: str | None = None) -> dict[str, Agreement]:
    """An empty :class:`Agreement` per head :func:`recognise` finds in
    ``graph`` (or per head of the named ``task``), by reported output."""
    return {head.outputs[0]: Agreement(head) for head in recognise(graph, task)}


def _wh_scale(head: Head, reference: Mapping[str, np.ndarray]) -> float:
    """CenterNet sizes in cells (times the stride), unless, read so, the
    float model's largest box at its peaks would be larger than the input:
    then pixels. Decided on the float outputs; both sides decoded alike."""
    if head.task != "centernet" or not head.sizes:
        return 1.0
    heat, wh = np.asarray(reference[head.outputs[0]])[0], np.asarray(reference["wh"])[0]
    found = peaks(heat)
    if not found:
        return max(head.stride)
    largest = max(float(np.max(np.abs(wh[:, y, x]))) for _, y, x, _ in found)
    side = max(head.stride) * max(heat.shape[1:])
    return 1.0 if largest * max(head.stride) >= side else max(head.stride)


def decode(head: Head, outputs: Mapping[str, np.ndarray], wh_scale: float | None = None) -> list[Box]:
    """One input's detections of ``head`` from the model's ``outputs`` (by
    name, batch of one). ``wh_scale``: pixels per CenterNet size unit
    (default: decided on these outputs)."""
    first = np.asarray(outputs[head.outputs[0]])
    if first.shape[0] != 1:
        raise QuantizationError(f"{head.outputs[0]}: agreement decodes a batch of one, got shape {list(first.shape)}")
    if head.task == "yolo":
        rows = first[0] if head.axis == 1 else first[0].T
        return yolo_boxes(rows, head.classes)
    if head.task == "db":
        return db_boxes(first[0, 0], head.stride)
    if head.task == "centernet":
        if not head.sizes:
            return centernet_boxes(first[0], head.stride)
        scale = _wh_scale(head, outputs) if wh_scale is None else wh_scale
        return centernet_boxes(first[0], head.stride, np.asarray(outputs["wh"])[0], np.asarray(outputs["reg"])[0],
                               scale)
    raise QuantizationError(f"task {head.task!r} has no detections to decode")

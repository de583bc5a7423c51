"""The modelled device timeline (runtime/timeline.py): it ends at hwtime,
its spans never overlap on a lane, they account for every module's busy
cycles, and split mode's copies between cards sit on the host link."""
from __future__ import annotations

from collections import defaultdict

import pytest

from compiler.compile import build, system_config
from passes.distribute import Placement
from runtime.engine import Engine
from runtime.hardware import HardwareConfig
from runtime.timeline import HOST_LINK, KINDS, UNITS
from tests.helpers.report_models import quantized


@pytest.fixture(scope="module", params=[(1, 1, "batch"), (1, 2, "batch"), (2, 2, "split")],
                ids=["one-cluster", "batch-2-clusters", "split-2-cards"])
def device(request):
    cards, clusters, mode = request.param
    config = system_config(HardwareConfig(), cards)
    return Engine(build(quantized().graph, config, placement=Placement(cards, clusters, mode))).device


def test_the_timeline_ends_at_hwtime_and_lanes_never_overlap(device):
    timeline = device.timeline()
    assert timeline.hwtime_ms == pytest.approx(device.hwtime_ms, rel=1e-12)
    assert max(span.end for span in timeline.spans) <= timeline.total_cycles
    by_lane = defaultdict(list)
    for span in timeline.spans:
        assert 0 <= span.start < span.end and 0 < span.busy <= span.end - span.start or span.kind == "barrier"
        assert span.kind in KINDS
        by_lane[span.lane].append(span)
    for spans in by_lane.values():
        for before, after in zip(spans, spans[1:]):
            assert before.end <= after.start, (before, after)


def test_spans_account_for_each_modules_busy_cycles_and_name_their_layers(device):
    timeline = device.timeline()
    busy = defaultdict(int)
    for span in timeline.spans:
        if span.lane.unit != HOST_LINK:
            busy[span.lane.unit] += span.busy
    timing_busy = defaultdict(int)
    for simulator in device.simulators:
        for module, cycles in simulator.timing.busy.items():
            timing_busy[module] += cycles
    # NOP and END rows are the only ones left out; they take a cycle each at most
    for module, unit in UNITS.items():
        assert 0 <= timing_busy[module.name] - busy[unit] <= device.instructions
    macs = {span.layer for span in timeline.spans if span.kind == "MAC"}
    conv_layers = {t.name for t in device.layer_times() if t.macs}
    assert conv_layers <= macs


def test_split_mode_across_cards_puts_its_copies_on_the_host_link(device):
    timeline = device.timeline()
    copies = [span for span in timeline.spans if span.lane.unit == HOST_LINK]
    exchanges = [e for segment in device.model.device_segments for e in segment.exchanges if e.phase >= 0]
    assert bool(copies) == bool(exchanges)
    cards = {span.lane.card for span in timeline.spans if span.lane.card >= 0}
    assert cards == set(range(device.model.config.cards))

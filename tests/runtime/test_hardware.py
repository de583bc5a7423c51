"""HardwareConfig: defaults, derived rates, validation, and the dict form a binary stores."""
import dataclasses
import json
import math

import pytest

from runtime.hardware import HardwareConfig, HardwareConfigError


def test_default_is_an_fwdnxt_class_card():
    hw = HardwareConfig()
    assert (hw.clock_hz, hw.cards, hw.clusters_per_card, hw.units_per_cluster, hw.macs_per_unit) == \
        (250_000_000, 1, 4, 4, 64)
    assert hw.weight_buffer_bytes == 256 * 1024 and hw.activation_buffer_bytes == 512 * 1024
    assert hw.data_widths == (8, 16) and hw.element_bytes == 1


def test_derived_rates_scale_with_cards_and_clusters():
    hw = HardwareConfig()
    assert hw.macs_per_cycle == 4 * 4 * 64
    assert hw.peak_macs_per_second == 250e6 * 1024
    two = dataclasses.replace(hw, cards=2, clusters_per_card=2)
    assert two.clusters == 4 and two.peak_macs_per_second == hw.peak_macs_per_second
    assert two.total_dram_bandwidth == 2 * hw.dram_bandwidth
    assert HardwareConfig(data_widths=(16,)).element_bytes == 2


@pytest.mark.parametrize("change, message", [
    ({"cards": 0}, "'cards' = 0 is outside"),
    ({"macs_per_unit": -4}, "'macs_per_unit' = -4"),
    ({"clusters_per_card": 2.0}, "'clusters_per_card' must be an int"),
    ({"units_per_cluster": True}, "'units_per_cluster' must be an int"),
    ({"weight_buffer_bytes": 1 << 40}, "'weight_buffer_bytes'"),
    ({"dram_bandwidth": 0.0}, "'dram_bandwidth' = 0.0"),
    ({"host_link_bandwidth": math.nan}, "'host_link_bandwidth' = nan"),
    ({"host_link_bandwidth": "fast"}, "must be a number"),
    ({"data_widths": ()}, "non-empty"),
    ({"data_widths": (8, 4)}, "has 4"),
    ({"data_widths": (8, 8)}, "repeats"),
    ({"data_widths": (8.0,)}, "has 8.0"),
])
def test_invalid_fields_are_named(change, message):
    with pytest.raises(HardwareConfigError, match=message.replace("(", r"\(")):
        HardwareConfig(**change)


def test_integer_bandwidths_become_floats():
    hw = HardwareConfig(dram_bandwidth=8_000_000_000)
    assert isinstance(hw.dram_bandwidth, float) and hw.dram_bandwidth == 8e9


def test_dict_round_trip_through_json():
    hw = HardwareConfig(cards=2, clusters_per_card=2, data_widths=(16, 8))
    data = json.loads(json.dumps(hw.to_dict()))
    assert data["data_widths"] == [8, 16]
    assert HardwareConfig.from_dict(data) == hw


def test_from_dict_rejects_untrusted_data():
    good = HardwareConfig().to_dict()
    with pytest.raises(HardwareConfigError, match="must be a mapping"):
        HardwareConfig.from_dict([1, 2])
    with pytest.raises(HardwareConfigError, match=r"unknown fields \['turbo'\]"):
        HardwareConfig.from_dict({**good, "turbo": 1})
    missing = dict(good)
    del missing["clock_hz"]
    with pytest.raises(HardwareConfigError, match=r"lacks fields \['clock_hz'\]"):
        HardwareConfig.from_dict(missing)
    with pytest.raises(HardwareConfigError, match="must be a list"):
        HardwareConfig.from_dict({**good, "data_widths": "8"})
    with pytest.raises(HardwareConfigError, match="'cards' = 1000000"):
        HardwareConfig.from_dict({**good, "cards": 10 ** 6})
    with pytest.raises(HardwareConfigError, match="'dram_bytes' must be an int"):
        HardwareConfig.from_dict({**good, "dram_bytes": None})


def test_config_is_frozen_and_hashable():
    hw = HardwareConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.cards = 2
    assert hash(hw) == hash(HardwareConfig())

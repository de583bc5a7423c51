"""The accelerator's hardware description: one frozen config object.

The compiler places and tiles work from it, the simulator times it, GetInfo
reports it, and the binary stores it (``to_dict``). A config read back from a
binary is untrusted: ``from_dict`` checks every field's type and range before
anything sizes a buffer from it.

The default is an FWDNXT-class card (shared/reference/api-notes.md 1.10): a
250 MHz clock, 4 clusters of 4 vector-MAC units of 64 int8 MACs each, with
on-chip weight and activation buffers per cluster, its own DRAM, and a PCIe
link to the host.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from runtime.errors import TesseraError

KIB = 1 << 10
GIB = 1 << 30

ACCELERATOR = "FPGA"
"""The accelerator's device name: affinities, partition segments and the
HETERO fallback string name it (FWDNXT's and OpenVINO's spelling)."""
HOST = "CPU"
"""The host's device name: what runs on the CPU kernels."""
DEVICES = (ACCELERATOR, HOST)
"""Tessera's devices, the one list every layer and API names them from."""
HETERO = "HETERO"
"""The prefix of a device list that splits a model between devices ("HETERO:FPGA,CPU")."""


class DeviceListError(TesseraError, ValueError):
    """A device list ("HETERO:FPGA,CPU") is empty, repeats a device or names an unknown one."""


def parse_fallback(text: str) -> tuple[str, ...]:
    """The devices of a fallback list, in priority order: 'HETERO:FPGA,CPU' or 'FPGA,CPU'."""
    body = text.strip()
    if body.startswith(HETERO + ":"):
        body = body[len(HETERO) + 1:]
    devices = tuple(d.strip() for d in body.split(","))
    if not all(devices):
        raise DeviceListError(f"fallback {text!r} has an empty device entry")
    if len(set(devices)) != len(devices):
        raise DeviceListError(f"fallback {text!r} lists a device twice")
    unknown = [d for d in devices if d not in DEVICES]
    if unknown:
        raise DeviceListError(f"fallback {text!r} names unknown devices {unknown}; the devices are {list(DEVICES)}")
    return devices

MAX_CARDS = int(os.environ.get("TESSERA_MAX_CARDS", "16"))
"""Cards the simulated system holds at most (FWDNXT's GetInfo('maxfpga')):
a program may use any number up to it, each card simulated with its own DRAM."""

MAX_HOST_DRAM = int(os.environ.get("TESSERA_MAX_HOST_DRAM", str(16 * GIB)))
"""Most bytes of simulated DRAM, all cards together, that one loaded model
may make this host allocate (env TESSERA_MAX_HOST_DRAM): a binary claiming
more is refused at load, and the compiler refuses to plan more."""

SUPPORTED_WIDTHS = (8, 16)
"""Integer data widths the datapath can have: int8 and 16-bit fixed point (Q8.8)."""


class HardwareConfigError(TesseraError):
    """A hardware config field has the wrong type or an impossible value."""


# (low, high) per integer field: high bounds keep sizes computed from an
# untrusted config far from overflow in the simulator's buffers.
_INT_RANGES = {
    "clock_hz": (1, 10 ** 10),
    "cards": (1, 64),
    "clusters_per_card": (1, 64),
    "units_per_cluster": (1, 64),
    "macs_per_unit": (1, 4096),
    "weight_buffer_bytes": (1, GIB),
    "activation_buffer_bytes": (1, GIB),
    "accumulator_buffer_bytes": (1, GIB),
    "dram_bytes": (1, 1 << 40),
    "max_conv_kernel": (1, 64),
    "max_pool_kernel": (1, 64),
}
_FLOAT_RANGES = {
    "dram_bandwidth": (1.0, 1e13),
    "host_link_bandwidth": (1.0, 1e13),
}


@dataclass(frozen=True)
class HardwareConfig:
    """One accelerator build: cards, clusters, MAC units, buffers, memory.

    Buffers are per cluster, DRAM size and bandwidth per card; bandwidths are
    in bytes per second. ``data_widths`` lists the integer widths (bits) the
    datapath supports."""

    clock_hz: int = 250_000_000
    cards: int = 1
    clusters_per_card: int = 4
    units_per_cluster: int = 4
    macs_per_unit: int = 64
    weight_buffer_bytes: int = 256 * KIB
    activation_buffer_bytes: int = 512 * KIB
    accumulator_buffer_bytes: int = 64 * KIB
    dram_bytes: int = 4 * GIB
    dram_bandwidth: float = 16e9
    host_link_bandwidth: float = 4e9
    data_widths: tuple[int, ...] = SUPPORTED_WIDTHS
    max_conv_kernel: int = 11
    max_pool_kernel: int = 16
    device: ClassVar[str] = ACCELERATOR
    """The device name of the segments this accelerator runs."""

    def __post_init__(self):
        for name, bounds in _INT_RANGES.items():
            _check_int(name, getattr(self, name), bounds)
        for name, bounds in _FLOAT_RANGES.items():
            object.__setattr__(self, name, _check_float(name, getattr(self, name), bounds))
        object.__setattr__(self, "data_widths", _check_widths(self.data_widths))

    # ------------------------------------------------------------ derived
    @property
    def clusters(self) -> int:
        """Clusters on all cards together."""
        return self.cards * self.clusters_per_card

    @property
    def macs_per_cycle(self) -> int:
        """MACs all clusters of all cards can issue in one clock cycle."""
        return self.clusters * self.units_per_cluster * self.macs_per_unit

    @property
    def peak_macs_per_second(self) -> float:
        """Peak MAC rate of the whole device (every card and cluster busy)."""
        return float(self.macs_per_cycle) * self.clock_hz

    @property
    def total_dram_bandwidth(self) -> float:
        """DRAM bandwidth of all cards together, bytes per second."""
        return self.dram_bandwidth * self.cards

    @property
    def element_bytes(self) -> int:
        """Bytes per tensor element at the narrowest supported width."""
        return min(self.data_widths) // 8

    def digest(self) -> str:
        """A short fingerprint of every field: what plans made for this config record."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain ints, floats and lists (JSON-ready), one entry per field."""
        out = dataclasses.asdict(self)
        out["data_widths"] = list(self.data_widths)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HardwareConfig:
        """The config a dict describes; every field must be present, typed and
        in range (the dict may come from an untrusted binary)."""
        if not isinstance(data, Mapping):
            raise HardwareConfigError(f"hardware config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in names)
        missing = sorted(names - set(data))
        if unknown or missing:
            raise HardwareConfigError(f"hardware config has unknown fields {unknown} and lacks fields {missing}")
        widths = data["data_widths"]
        if not isinstance(widths, (list, tuple)):
            raise HardwareConfigError(f"hardware config field 'data_widths' must be a list, got {widths!r}")
        return cls(**{**data, "data_widths": tuple(widths)})


def dram_shortfall(config: HardwareConfig, needed: int, weights: int) -> str | None:
    """Why a model needing ``needed`` bytes of DRAM per card, ``weights`` of
    them its weights image, cannot be loaded on ``config``'s cards simulated
    here (both numbers, needed and available); None when it can."""
    if weights > config.dram_bytes:
        return f"the weights need {weights} bytes of DRAM; the card has {config.dram_bytes} (dram_bytes)"
    if needed > config.dram_bytes:
        return f"the model needs {needed} bytes of DRAM; the card has {config.dram_bytes} (dram_bytes)"
    if needed * config.cards > MAX_HOST_DRAM:
        return (f"the model needs {needed * config.cards} bytes of simulated DRAM ({config.cards} card(s) of "
                f"{needed}); this host allows {MAX_HOST_DRAM} (runtime.hardware.MAX_HOST_DRAM, environment "
                "variable TESSERA_MAX_HOST_DRAM)")
    return None


def _check_int(name: str, value: Any, bounds: tuple[int, int]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise HardwareConfigError(f"hardware config field {name!r} must be an int, got {value!r}")
    low, high = bounds
    if not low <= value <= high:
        raise HardwareConfigError(f"hardware config field {name!r} = {value} is outside [{low}, {high}]")


def _check_float(name: str, value: Any, bounds: tuple[float, float]) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise HardwareConfigError(f"hardware config field {name!r} must be a number, got {value!r}")
    low, high = bounds
    if not (math.isfinite(value) and low <= value <= high):
        raise HardwareConfigError(f"hardware config field {name!r} = {value} is outside [{low:g}, {high:g}]")
    return float(value)


def _check_widths(widths: Any) -> tuple[int, ...]:
    if not isinstance(widths, tuple) or not widths:
        raise HardwareConfigError(f"hardware config field 'data_widths' must be a non-empty tuple, got {widths!r}")
    for width in widths:
        if not isinstance(width, int) or isinstance(width, bool) or width not in SUPPORTED_WIDTHS:
            raise HardwareConfigError(f"hardware config field 'data_widths' has {width!r}; "
                                      f"the datapath widths are {list(SUPPORTED_WIDTHS)}")
    if len(set(widths)) != len(widths):
        raise HardwareConfigError(f"hardware config field 'data_widths' repeats a width: {list(widths)}")
    return tuple(sorted(widths))


PRESETS: dict[str, HardwareConfig] = {
    "fwdnxt": HardwareConfig(),
    "tiny": HardwareConfig(weight_buffer_bytes=2 * KIB, activation_buffer_bytes=KIB, accumulator_buffer_bytes=512,
                           clusters_per_card=1),
    "large": HardwareConfig(clock_hz=500_000_000, cards=2, clusters_per_card=8, units_per_cluster=8,
                            macs_per_unit=128, weight_buffer_bytes=4096 * KIB, activation_buffer_bytes=8192 * KIB,
                            accumulator_buffer_bytes=1024 * KIB),
}
"""Named configs: the default FWDNXT-class card; a tiny one whose 1 KiB of
activation buffer forces single-row tiles and split reductions (tests run
every model on it); a large two-card one."""


def hardware_config(spec: str) -> HardwareConfig:
    """A preset by name, or a JSON file of ``to_dict``'s form."""
    if spec in PRESETS:
        return PRESETS[spec]
    import json

    from runtime.files import MAX_TEXT_BYTES, FileError, read_regular

    try:
        data = json.loads(read_regular(spec, MAX_TEXT_BYTES, "hardware config").decode("utf-8"))
    except FileError as exc:
        raise HardwareConfigError(f"hardware config {spec!r} is neither a preset {sorted(PRESETS)} nor a "
                                  f"readable JSON file: {exc.cause}") from None
    except (ValueError, RecursionError) as exc:
        raise HardwareConfigError(f"hardware config {spec!r} is neither a preset {sorted(PRESETS)} nor a "
                                  f"readable JSON file: {exc}") from None
    return HardwareConfig.from_dict(data)

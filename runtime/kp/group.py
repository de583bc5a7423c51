"""kp.DeviceGroup: the connected simulated devices, their loaded model,
timeout, inference configuration, work queue and profile statistics."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from runtime.compiled import CompiledModel
from runtime.kp.devices import Frame, FrameQueue, SimDevice
from runtime.kp.enums import ChannelOrdering, ModelTargetChip, ProductId
from runtime.kp.model import Grid, interface
from runtime.kp.value import InferenceConfiguration, ModelNefDescriptor, ProfileModelStatistics

_TARGETS = {ProductId.KP_DEVICE_KL520: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL520,
            ProductId.KP_DEVICE_KL720: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL720,
            ProductId.KP_DEVICE_KL720_LEGACY: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL720,
            ProductId.KP_DEVICE_KL530: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL530,
            ProductId.KP_DEVICE_KL730: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL730,
            ProductId.KP_DEVICE_KL630: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL630,
            ProductId.KP_DEVICE_KL540: ModelTargetChip.KP_MODEL_TARGET_CHIP_KL540}
_DEFAULT_ORDERING = {ProductId.KP_DEVICE_KL520: ChannelOrdering.KP_CHANNEL_ORDERING_HCW}
"""What ChannelOrdering.DEFAULT means per chip: KL520 HCW; KL720/630 CHW,
others the ONNX order, which for an [N, C, H, W] output is CHW too."""


@dataclass
class LoadedModel:
    """A Tessera binary loaded on a group: its id, model and interface grids."""

    id: int
    compiled: CompiledModel
    descriptor: ModelNefDescriptor
    inputs: list[Grid]
    outputs: list[Grid]

    @classmethod
    def of(cls, model_id: int, compiled: CompiledModel, descriptor: ModelNefDescriptor) -> "LoadedModel":
        inputs, outputs = interface(compiled)
        return cls(model_id, compiled, descriptor, inputs, outputs)


class _Totals:
    __slots__ = ("count", "pre_ms", "inference_ms", "cpu_ops", "cpu_ms", "post_ms")

    def __init__(self):
        self.count, self.cpu_ops = 0, 0
        self.pre_ms = self.inference_ms = self.cpu_ms = self.post_ms = 0.0


class DeviceGroup:
    """A set of connected simulated devices (kp.core.connect_devices)."""

    def __init__(self, devices: list[SimDevice]):
        self.devices = devices
        self.product_id = devices[0].product
        self.target_chip = _TARGETS.get(self.product_id, ModelTargetChip.KP_MODEL_TARGET_CHIP_UNKNOWN)
        self.default_ordering = _DEFAULT_ORDERING.get(self.product_id, ChannelOrdering.KP_CHANNEL_ORDERING_CHW)
        self.timeout_s: float | None = None
        self.configuration = InferenceConfiguration()
        self.model: LoadedModel | None = None
        self.connected = True
        self.profiling = False
        self._totals: dict[int, _Totals] = {}
        self._lock = threading.Lock()
        self.queue = FrameQueue(devices, on_done=self._ran)

    @property
    def usb_port_ids(self) -> list[int]:
        return [d.port for d in self.devices]

    def load(self, model: LoadedModel) -> None:
        self.unload()
        for device in self.devices:
            device.load(model.id, model.compiled)
        self.model = model

    def unload(self) -> None:
        self.queue.clear()
        for device in self.devices:
            device.unload()
        self.model = None

    def close(self) -> None:
        self.unload()
        self.queue.close()
        self.connected = False

    # ------------------------------------------------------------ profiling
    def set_profiling(self, enable: bool) -> None:
        """Start (clearing what was gathered) or stop gathering statistics."""
        with self._lock:
            self.profiling = bool(enable)
            if enable:
                self._totals.clear()

    def _ran(self, frame: Frame) -> None:
        if not self.profiling or frame.error is not None:
            return
        with self._lock:
            totals = self._totals.setdefault(frame.model.id, _Totals())
            totals.count += 1
            totals.pre_ms += frame.pre_ms
            totals.inference_ms += frame.hwtime_ms
            totals.cpu_ops += len(frame.cpu_ops)
            totals.cpu_ms += sum(seconds for _, _, seconds in frame.cpu_ops) * 1e3

    def post_processed(self, model_id: int, milliseconds: float) -> None:
        """Host post-processing time spent on a result of ``model_id``."""
        if self.profiling:
            with self._lock:
                self._totals.setdefault(model_id, _Totals()).post_ms += milliseconds

    def statistics(self) -> list[ProfileModelStatistics]:
        with self._lock:
            stats = []
            for model_id, t in sorted(self._totals.items()):
                n = max(t.count, 1)
                stats.append(ProfileModelStatistics(
                    model_id=model_id, inference_count=t.count, cpu_op_count=round(t.cpu_ops / n),
                    avg_pre_process_ms=t.pre_ms / n, avg_inference_ms=t.inference_ms / n,
                    avg_cpu_op_ms=t.cpu_ms / n, avg_cpu_op_per_cpu_node_ms=t.cpu_ms / max(t.cpu_ops, 1),
                    avg_post_process_ms=t.post_ms / n))
            return stats

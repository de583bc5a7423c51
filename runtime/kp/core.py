"""kp.core over simulated devices: scan, connect, load a Tessera binary,
timeouts and resets (docs/kp.md)."""
from __future__ import annotations

import threading
import time
import zlib

from runtime.binary import BinaryFormatError, read_binary
from runtime.binary.reader import load_bytes
from runtime.files import MAX_BINARY_BYTES, FileError, check_regular
from runtime.kp.devices import CHIPS, SimDevice, simulate_devices, simulated_devices
from runtime.kp.enums import ApiReturnCode, ResetMode, UsbSpeed
from runtime.kp.exception import fail
from runtime.kp.group import DeviceGroup, LoadedModel
from runtime.kp.model import MODEL_ID, nef_descriptor
from runtime.kp.value import DeviceDescriptor, DeviceDescriptorList, ModelNefDescriptor

__all__ = ["scan_devices", "connect_devices", "connect_devices_without_check", "disconnect_devices", "set_timeout",
           "reset_device", "load_model", "load_model_from_file", "load_firmware", "load_firmware_from_file",
           "get_version", "simulate_devices", "CHIPS"]

VERSION = "tessera-kp 3.2.0 (simulated devices)"
_connected: set[int] = set()
_lock = threading.Lock()
E = ApiReturnCode


def scan_devices() -> DeviceDescriptorList:
    """The simulated devices (simulate_devices / TESSERA_KP_DEVICES)."""
    with _lock:
        devices = [DeviceDescriptor(usb_port_id=port, product_id=int(chip), link_speed=UsbSpeed.KP_USB_SPEED_SUPER,
                                    kn_number=0x7E550000 + port, is_connectable=port not in _connected,
                                    usb_port_path=f"sim-{port}", firmware="KDP2 Comp/F (Tessera simulator)")
                   for port, chip in enumerate(simulated_devices(), start=1)]
    return DeviceDescriptorList(len(devices), devices)


def connect_devices(usb_port_ids) -> DeviceGroup:
    """A DeviceGroup of the devices at ``usb_port_ids`` (all of one chip).
    Port 0 means the first connectable device, as in Kneron PLUS (api-notes
    3.2; the examples' ``--port_id`` default): each 0 takes the first device
    a scan reports connectable that the list does not name otherwise."""
    name = "core.connect_devices"
    if isinstance(usb_port_ids, int):
        usb_port_ids = [usb_port_ids]
    try:
        ports = list(usb_port_ids or [])
    except TypeError:
        ports = [usb_port_ids]
    named = [p for p in ports if p != 0]
    if (not ports or len(set(named)) != len(named)
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in ports)):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, name, f"usb_port_ids must be distinct ints (0: the first "
                   f"connectable device), got {usb_port_ids!r}")
    chips = simulated_devices()
    missing = [p for p in named if not 1 <= p <= len(chips)]
    if missing:
        raise fail(E.KP_ERROR_DEVICE_NOT_EXIST_10, name,
                   f"no simulated device at port(s) {missing}; the ports are 1..{len(chips)} (0: the first "
                   "connectable one)")
    with _lock:
        free = [p for p in range(1, len(chips) + 1) if p not in _connected and p not in named]
        if len(ports) - len(named) > len(free):
            raise fail(E.KP_ERROR_CONNECT_FAILED_28, name,
                       f"port 0 asks for the first connectable device, and none is left: the {len(chips)} simulated "
                       f"device(s) at ports 1..{len(chips)} are connected or named already")
        ports = [p if p != 0 else free.pop(0) for p in ports]
        if len({chips[p - 1] for p in ports}) > 1:
            raise fail(E.KP_ERROR_DEVICE_GROUP_MIX_PRODUCT_29, name,
                       f"ports {ports} are devices of different chips {[chips[p - 1].name for p in ports]}")
        busy = [p for p in ports if p in _connected]
        if busy:
            raise fail(E.KP_ERROR_CONNECT_FAILED_28, name, f"port(s) {busy} already connected in another group")
        _connected.update(ports)
    return DeviceGroup([SimDevice(p, chips[p - 1]) for p in ports])


connect_devices_without_check = connect_devices


def group(device_group, function: str) -> DeviceGroup:
    """``device_group`` checked: a DeviceGroup still connected."""
    if not isinstance(device_group, DeviceGroup):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, function,
                   f"expected a kp.DeviceGroup, got {type(device_group).__name__}")
    if not device_group.connected:
        raise fail(E.KP_ERROR_DEVICE_NOT_EXIST_10, function, "the device group was disconnected")
    return device_group


def disconnect_devices(device_group) -> None:
    dg = group(device_group, "core.disconnect_devices")
    dg.close()
    with _lock:
        _connected.difference_update(dg.usb_port_ids)


def set_timeout(device_group, milliseconds: int) -> None:
    """Sends and receives wait at most ``milliseconds`` (0: no limit) before TIMEOUT."""
    dg = group(device_group, "core.set_timeout")
    if not isinstance(milliseconds, int) or milliseconds < 0:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, "core.set_timeout", f"milliseconds must be an int >= 0, "
                   f"got {milliseconds!r}")
    dg.timeout_s = milliseconds / 1000 if milliseconds else None


def reset_device(device_group, reset_mode=ResetMode.KP_RESET_REBOOT, sleep_secs: float = 0) -> None:
    """INFERENCE drops the frames not received; REBOOT, REBOOT_SYSTEM and
    SHUTDOWN also unload the model (SHUTDOWN disconnects the group)."""
    dg = group(device_group, "core.reset_device")
    try:
        mode = ResetMode(reset_mode)
    except ValueError:
        raise fail(E.KP_ERROR_INVALID_PARAM_12, "core.reset_device", f"reset_mode {reset_mode!r} is not a "
                   "kp.ResetMode") from None
    if mode == ResetMode.KP_RESET_INFERENCE:
        dg.queue.clear()
    elif mode == ResetMode.KP_RESET_SHUTDOWN:
        disconnect_devices(dg)
    else:
        dg.unload()
    if sleep_secs:
        time.sleep(sleep_secs)


def load_model(device_group, nef_buffer) -> ModelNefDescriptor:
    """Load a Tessera binary held in ``nef_buffer`` (bytes) on every device."""
    dg = group(device_group, "core.load_model")
    if not isinstance(nef_buffer, (bytes, bytearray, memoryview)):
        raise fail(E.KP_ERROR_INVALID_PARAM_12, "core.load_model", "nef_buffer must be bytes")
    return _load(dg, bytes(nef_buffer), "core.load_model", "nef_buffer")


def load_model_from_file(device_group, file_path) -> ModelNefDescriptor:
    """Load the Tessera binary at ``file_path`` on every device of the group.
    Only a regular file of at most MAX_BINARY_BYTES is opened (a FIFO, a
    device or a directory is FILE_OPEN_FAILED_20 at once, never a wait), and
    it is read whole only once its header shows a Tessera binary of its size."""
    name = "core.load_model_from_file"
    dg = group(device_group, name)
    try:
        check_regular(file_path, MAX_BINARY_BYTES, "binary")
        data = load_bytes(file_path)
    except FileError as exc:
        raise fail(E.KP_ERROR_FILE_OPEN_FAILED_20, name, str(exc)) from None
    except TypeError:
        raise fail(E.KP_ERROR_FILE_OPEN_FAILED_20, name, f"file_path must be a path, got "
                   f"{type(file_path).__name__} {file_path!r:.40}") from None
    except BinaryFormatError as exc:
        raise fail(E.KP_ERROR_INVALID_MODEL_21, name, f"{str(file_path)!r} is not a valid Tessera binary: {exc}") \
            from None
    return _load(dg, data, name, repr(str(file_path)))


def _load(dg: DeviceGroup, data: bytes | memoryview, function: str, source: str) -> ModelNefDescriptor:
    """Load the binary ``data`` (read from ``source``, named in errors) on every device of ``dg``."""
    try:
        compiled = read_binary(data)
    except BinaryFormatError as exc:
        raise fail(E.KP_ERROR_INVALID_MODEL_21, function, f"{source} is not a valid Tessera binary: {exc}") from None
    descriptor = nef_descriptor(compiled, zlib.crc32(data), dg.target_chip)
    dg.load(LoadedModel.of(MODEL_ID, compiled, descriptor))
    return descriptor


def load_firmware(device_group, scpu_fw_buffer=b"", ncpu_fw_buffer=b"") -> None:
    """Accepted and ignored: a simulated device's firmware is the simulator."""
    group(device_group, "core.load_firmware")


def load_firmware_from_file(device_group, scpu_fw_path="", ncpu_fw_path="") -> None:
    """Accepted and ignored (the files are not read): see load_firmware."""
    group(device_group, "core.load_firmware_from_file")


def get_version() -> str:
    return VERSION

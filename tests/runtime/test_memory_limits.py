"""Memory limits (issue 23 item 5): a binary whose weights or DRAM size
exceed its card's DRAM, or whose simulated DRAM (every card's) exceeds this
host's limit (runtime.hardware.MAX_HOST_DRAM), is refused at load by every
loader with both numbers, needed and available; the compiler refuses to
plan more DRAM than the card has, saying both numbers too."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from codegen.device.decisions import CodegenError
from compiler.compile import compile_model
from runtime import FWDNXT, hardware, kp
from runtime.binary import BinaryFormatError, read_binary
from runtime.fwdnxt import FWDNXTError
from runtime.hardware import GIB, HardwareConfig
from tests.helpers.binary import Parts
from tests.helpers.fwdnxt import compile_tiny, images, tiny_onnx


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> bytes:
    path, _ = compile_tiny(tmp_path_factory.mktemp("limits"))
    return path.read_bytes()


def _edited(data: bytes, config: dict | None = None, dram_size: int | None = None) -> bytes:
    """``data`` re-packed, checksums recomputed, with CONFIG fields and META.dram_size replaced."""
    parts = Parts(data)
    parts.config.update(config or {})
    if dram_size is not None:
        parts.meta["dram_size"] = dram_size
    return parts.build()


def test_the_tiny_binary_fits(tiny):
    model = read_binary(tiny)
    assert 0 < len(model.dram_image) <= model.dram_size <= model.config.dram_bytes


def test_weights_beyond_the_cards_dram_are_refused_with_both_numbers(tiny):
    weights = len(read_binary(tiny).dram_image)
    small = _edited(tiny, {"dram_bytes": weights - 1})
    with pytest.raises(BinaryFormatError, match=f"the weights need {weights} bytes of DRAM; the card has "
                                                f"{weights - 1}"):
        read_binary(small)


def test_a_dram_size_beyond_the_cards_dram_is_refused_with_both_numbers(tiny):
    big = _edited(tiny, dram_size=4 * GIB + 8)
    with pytest.raises(BinaryFormatError, match=f"META.dram_size: the model needs {4 * GIB + 8} bytes of DRAM; "
                                                f"the card has {4 * GIB}"):
        read_binary(big)


def test_more_simulated_dram_than_the_host_allows_is_refused_by_every_loader(tiny, tmp_path):
    """A hostile CONFIG claims 64 cards of 1 TiB: allocating them would take
    the process down, so the host's limit refuses the binary first."""
    size = 1 << 40
    path = tmp_path / "huge.bin"
    path.write_bytes(_edited(tiny, {"cards": 64, "dram_bytes": size}, dram_size=size))
    message = (f"the model needs {64 * size} bytes of simulated DRAM \\(64 card\\(s\\) of {size}\\); this host "
               f"allows {hardware.MAX_HOST_DRAM}")
    with pytest.raises(BinaryFormatError, match=message):
        read_binary(str(path))
    with pytest.raises(FWDNXTError, match=f"^Init: .*{message}"):
        FWDNXT().Init(str(path), "")
    kp.core.simulate_devices(1, "KL720")
    dg = kp.core.connect_devices([1])
    try:
        with pytest.raises(kp.ApiKPException, match=message) as info:
            kp.core.load_model_from_file(dg, str(path))
        assert info.value.api_return_code == kp.ApiReturnCode.KP_ERROR_INVALID_MODEL_21
    finally:
        kp.core.disconnect_devices(dg)


def test_the_host_limit_is_the_documented_constant(tiny, monkeypatch):
    model = read_binary(tiny)
    monkeypatch.setattr(hardware, "MAX_HOST_DRAM", model.dram_size - 1)
    with pytest.raises(BinaryFormatError, match=f"needs {model.dram_size} bytes of simulated DRAM .* this host "
                                                f"allows {model.dram_size - 1}"):
        read_binary(tiny)


def test_the_compiler_refuses_to_plan_more_dram_than_the_card_has(tmp_path):
    source = tiny_onnx(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = compile_model(str(source), image="2x2x2", samples=images(2))
        with pytest.raises(CodegenError, match=f"the model needs {fits.dram_size} bytes of DRAM; the card has "
                                               f"{fits.dram_size - 1}"):
            compile_model(str(source), image="2x2x2", samples=images(2),
                          config=HardwareConfig(dram_bytes=fits.dram_size - 1))
    assert np.frombuffer(fits.dram_image, np.uint8).size <= fits.dram_size

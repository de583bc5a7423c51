"""runtime/array_files.py and the Simulator's sample reader: every array's
header is checked (element count, bytes held, no pickle) before its data
is read, and HDF5 samples hold their data themselves."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from compiler.simulator.data import TensorSpec, load_sample
from compiler.simulator.errors import SimulatorError
from runtime.array_files import ArrayFileError, load_arrays


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_arrays_read_as_numpy_writes_them(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.savez_compressed(tmp_path / "z.npz", a=x, b=x[0].astype(np.int16))
    for name in ("c.npy", "f.npy"):
        np.testing.assert_array_equal(load_arrays(tmp_path / name), x)
    loaded = load_arrays(tmp_path / "z.npz")
    assert sorted(loaded) == ["a", "b"] and loaded["b"].dtype == np.int16
    np.testing.assert_array_equal(loaded["a"], x)
    assert loaded["a"].flags.writeable


def test_a_header_promising_more_than_the_file_holds_is_refused_unallocated(tmp_path):
    header = npy_bytes(np.zeros(4, np.float64)).replace(b"(4,)", b"(1000000000000000,)")
    (tmp_path / "huge.npy").write_bytes(header)
    with pytest.raises(ArrayFileError, match=r"declares shape \[1000000000000000\] .*more than the 1000"):
        load_arrays(tmp_path / "huge.npy", max_elements=1000)
    with pytest.raises(ArrayFileError, match=r"\(8000000000000000 bytes\) but the file holds \d+ bytes of data"):
        load_arrays(tmp_path / "huge.npy", max_elements=1 << 60)


def test_an_npz_that_expands_past_the_models_inputs_is_refused_before_expanding(tmp_path):
    """256 MiB of zeros in a 256 KiB member: refused by its header's shape."""
    path = tmp_path / "bomb.npz"
    count = 1 << 25
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("x.npy", "w") as member:
        member.write(npy_bytes(np.zeros(1, np.float64)).replace(b"(1,)", f"({count},)".encode()).rstrip(bytes(8)))
        chunk = bytes(1 << 20)
        for _ in range(count * 8 // len(chunk)):
            member.write(chunk)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ArrayFileError, match=rf"member 'x.npy': its header declares shape \[{count}\]"):
        load_arrays(path, max_elements=3 * 224 * 224)


def test_pickles_are_refused(tmp_path):
    (tmp_path / "p.npy").write_bytes(npy_bytes(np.array([{"a": 1}], dtype=object)))
    with pytest.raises(ArrayFileError, match="a pickle"):
        load_arrays(tmp_path / "p.npy")


INPUT = [TensorSpec("x", (1, 4), np.dtype(np.float32))]


def test_hdf5_samples_must_hold_their_own_data(tmp_path):
    h5py = pytest.importorskip("h5py")
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as file:
        file["x"] = np.ones((1, 4), np.float32)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(4, np.float32).tobytes())
    cases = {"link.h5": "is an external link", "storage.h5": "uses external storage",
             "virtual.h5": "uses a virtual dataset", "big.h5": r"has shape \[1, 2000000\]"}
    with h5py.File(tmp_path / "link.h5", "w") as file:
        file["x"] = h5py.ExternalLink(str(outside), "x")
    with h5py.File(tmp_path / "storage.h5", "w") as file:
        file.create_dataset("x", (1, 4), np.float32, external=[(str(raw), 0, 16)])
    with h5py.File(tmp_path / "virtual.h5", "w") as file:
        layout = h5py.VirtualLayout((1, 4), np.float32)
        layout[:] = h5py.VirtualSource(str(outside), "x", shape=(1, 4))
        file.create_virtual_dataset("x", layout)
    with h5py.File(tmp_path / "big.h5", "w") as file:
        file["x"] = np.zeros((1, 2000000), np.float32)
    for name, cause in cases.items():
        with pytest.raises(SimulatorError, match=cause):
            load_sample(tmp_path / name, INPUT)
    np.testing.assert_array_equal(load_sample(outside, INPUT)["x"], np.ones((1, 4), np.float32))

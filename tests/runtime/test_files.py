"""runtime/files.py: writes are whole or not at all (a failing write keeps
the previous file byte for byte; racing writers leave one whole file),
reads take only regular files under a size cap."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.binary import write_binary
from runtime.binary import BinaryFormatError, read_binary
from runtime.files import FileError, atomic_output, check_writable, inside, read_regular, write_atomic
from tests.helpers.binary import loop_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binaries() -> tuple[bytes, bytes]:
    """Two different valid binaries: one model with and without its reference."""
    model = loop_model()
    return write_binary(model), write_binary(model, strip_reference=True)


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_an_exception_while_writing_keeps_the_previous_file(tmp_path):
    target = tmp_path / "report.csv"
    write_atomic(target, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target, "w") as handle:
            handle.write("half of the new")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path, "report.csv") == []


def test_a_file_size_limit_keeps_the_previous_binary(tmp_path, binaries):
    big, small = binaries
    target = tmp_path / "model.bin"
    target.write_bytes(small)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(small) + 10, hard))  # Python ignores SIGXFSZ: EFBIG
    try:
        with pytest.raises(FileError, match=r"model.bin: cannot be written \(File too large\); the previous file"):
            write_binary(loop_model(), target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert len(big) > len(small) + 10
    assert target.read_bytes() == small
    assert leftovers(tmp_path, "model.bin") == []


FULL_DISK = """
import sys
from runtime.files import FileError, write_atomic
folder, previous, new = sys.argv[1], sys.argv[2], sys.argv[3]
write_atomic(folder + "/model.bin", open(previous, "rb").read())
try:
    write_atomic(folder + "/model.bin", open(new, "rb").read())
except FileError as exc:
    print("refused:", exc)
print("kept" if open(folder + "/model.bin", "rb").read() == open(previous, "rb").read() else "changed")
print("files:", sorted(__import__("os").listdir(folder)))
"""


def test_a_full_disk_keeps_the_previous_binary(tmp_path, binaries):
    """On a small tmpfs (mounted in a private mount namespace) that holds the
    old binary but not the new one beside it."""
    big, small = binaries
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("this host does not allow a private mount namespace (unshare -rm) for a small tmpfs")
    (tmp_path / "old.bin").write_bytes(small)
    (tmp_path / "new.bin").write_bytes(big * 4)
    disk = tmp_path / "disk"
    disk.mkdir()
    size = len(small) + 2 * len(big)  # room for the old file, not for the new one
    script = (f"mount -t tmpfs -o size={size} tmpfs {disk} && "
              f"{sys.executable} -c '{FULL_DISK}' {disk} {tmp_path / 'old.bin'} {tmp_path / 'new.bin'}")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "refused:" in run.stdout and "No space left on device" in run.stdout, run.stdout
    assert "kept" in run.stdout.splitlines() and "files: ['model.bin']" in run.stdout, run.stdout


RACER = """
import sys
from runtime.files import write_atomic
data = open(sys.argv[2], "rb").read()
for _ in range(int(sys.argv[3])):
    write_atomic(sys.argv[1], data)
"""


def test_two_processes_racing_for_one_path_leave_a_whole_binary(tmp_path, binaries):
    """Two writers, 200 writes each, while this process loads the file over
    and over: every load is one of the two binaries, whole."""
    target = tmp_path / "model.bin"
    target.write_bytes(binaries[0])
    sources = []
    for index, data in enumerate(binaries):
        sources.append(tmp_path / f"source{index}.bin")
        sources[-1].write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", RACER, str(target), str(s), "200"], env=env)
               for s in sources]
    loads = 0
    while any(w.poll() is None for w in writers) or loads == 0:
        assert target.read_bytes() in binaries
        read_binary(target)
        loads += 1
    assert [w.wait() for w in writers] == [0, 0]
    assert target.read_bytes() in binaries and read_binary(target).outputs
    assert leftovers(tmp_path, "model.bin") == ["source0.bin", "source1.bin"]


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves the temporary; the next write of that target removes it
    once its process is gone and it is older than STALE_SECONDS."""
    target = tmp_path / "model.bin"
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    fresh, stale = (tmp_path / f".model.bin.{pid}-0123abcd.tmp" for pid in (os.getpid(), writer.pid))
    writer.kill()
    writer.wait()
    for leftover in (fresh, stale):
        leftover.write_bytes(b"half")
        os.utime(leftover, (0, 0))
    write_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert leftovers(tmp_path, "model.bin") == [fresh.name]  # its writer (this process) lives


def test_a_write_that_cannot_happen_is_named_before_any_work(tmp_path):
    for path, cause in ((tmp_path / "missing" / "m.bin", r"its folder .* does not exist"),
                        (tmp_path, "is a directory"), (tmp_path / "a\x00b", "NUL")):
        with pytest.raises(FileError, match=cause):
            check_writable(path)
    check_writable(tmp_path / "m.bin")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing


def test_a_device_target_is_written_in_place(tmp_path):
    write_atomic("/dev/null", b"discarded")  # never renamed over, never refused


def test_reads_take_regular_files_under_their_cap(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, cause in ((fifo, "a FIFO"), ("/dev/zero", "a character device"), (tmp_path, "a directory")):
        with pytest.raises(FileError, match=f"cannot read the data: it is {cause}"):
            read_regular(path, 100, "data")
    big = tmp_path / "big"
    big.write_bytes(bytes(101))
    with pytest.raises(FileError, match="the data is 101 bytes, more than the limit of 100 bytes"):
        read_regular(big, 100, "data")
    assert read_regular(big, 1 << 20, "data", offset=100, length=1) == b"\x00"
    with pytest.raises(FileError, match=r"bytes \[100, \+2\) lie outside it"):
        read_regular(big, 1 << 20, "data", offset=100, length=2)


def test_a_binary_path_that_is_not_a_file_is_a_format_error(tmp_path):
    with pytest.raises(BinaryFormatError, match="it is a directory"):
        read_binary(tmp_path)


@pytest.mark.parametrize("location, cause", [("/etc/passwd", "absolute"), ("../x.bin", r"'\.\.'"),
                                             ("sub/../../x", r"'\.\.'"), ("", "empty")])
def test_a_side_file_location_must_stay_in_its_folder(tmp_path, location, cause):
    with pytest.raises(ValueError, match=cause):
        inside(tmp_path, location)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"x")
    (model / "weights.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ValueError, match="symbolic link"):
        inside(model, "weights.bin")
    (model / "inner.bin").write_bytes(b"y")
    (model / "alias.bin").symlink_to(model / "inner.bin")
    assert inside(model, "alias.bin") == (model / "inner.bin").resolve()


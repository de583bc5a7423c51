"""Files as Tessera writes and reads them: whole or not at all, and only
what it can afford.

Every file Tessera writes (binaries, encodings, reports, CSVs, DOT files,
dumps, the kernel cache) goes through :func:`write_atomic` or
:func:`atomic_output`: the bytes go to a temporary file beside the target,
are flushed and fsynced, and only then renamed over the target. A failure at
any point (a full disk, a file-size limit, Ctrl-C) leaves the previous file
byte for byte and removes the temporary; two writers racing for one path
leave one of the two files whole, never a mix. A failure is a
:class:`FileError` naming the path and the cause.

Every file Tessera reads goes through :func:`open_regular` or
:func:`read_regular`: only a regular file is opened (a FIFO, a device, a
socket or a directory is a named error at once; a FIFO is opened without
waiting for a writer), and its size is checked against the reader's cap
before anything is allocated.
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import time
from pathlib import Path
from typing import IO, Iterator

from runtime.errors import TesseraError

GIB = 1 << 30


def _limit(variable: str, default: int) -> int:
    """A size cap: ``default`` unless the environment variable sets another."""
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


MAX_BINARY_BYTES = _limit("TESSERA_MAX_BINARY_BYTES", 16 * GIB)
"""Largest compiled binary read (its weights are the card's DRAM image)."""
MAX_MODEL_BYTES = 2 * GIB
"""Largest ONNX file read: protobuf's own limit (larger weights go in side files)."""
MAX_DATA_BYTES = _limit("TESSERA_MAX_DATA_BYTES", 4 * GIB)
"""Largest data file read whole or expanded: an external-data side file's
tensor, an array in .npy/.npz/.h5 data, a decoded image."""
MAX_TEXT_BYTES = _limit("TESSERA_MAX_TEXT_BYTES", 256 << 20)
"""Largest text file read (encodings JSON, hardware configs, label lists)."""


class FileError(TesseraError):
    """A file could not be read or written; names the path and the cause.
    APIs raise it as their own error class (FWDNXTError, ...) with the same
    message."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path, self.cause = os.fspath(path), cause
        super().__init__(f"{self.path}: {cause}")


def _cause(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


# ------------------------------------------------------------------ writing
def write_atomic(path: str | os.PathLike, data: bytes | bytearray | memoryview | str, *,
                 encoding: str = "utf-8") -> None:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` whole or
    not at all (the module docstring)."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_output(path) as handle:
        handle.write(payload)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                  newline: str | None = None) -> Iterator[IO]:
    """A file to write ``path``'s new contents to ("wb" or "w"); on a clean
    exit they replace the target at once, on an exception the target is
    untouched, the temporary removed, and an OSError becomes a FileError.
    A target that exists and is a FIFO or a device (``-o /dev/stdout``) is
    written in place: there is nothing to rename over."""
    target = os.fspath(path)
    _check_target(target)
    if _is_special(target):
        with _special_output(target, mode, encoding, newline) as handle:
            yield handle
        return
    _remove_stale(target)
    temporary = _temporary_name(target)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise FileError(target, f"cannot be written: {_cause(exc)}") from None
    try:
        with _handle(fd, mode, encoding, newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise FileError(target, f"cannot be written ({_cause(exc)}); the previous file, if any, is "
                                    "unchanged") from None
        raise
    _sync_folder(target)


def check_writable(path: str | os.PathLike) -> None:
    """Raise a FileError now if ``path`` could not be written later (its
    folder missing or read-only, the path a directory): a compile checks
    this before it spends minutes, and nothing is left behind."""
    target = os.fspath(path)
    _check_target(target)
    if _is_special(target):
        return
    temporary = _temporary_name(target)
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise FileError(target, f"cannot be written: {_cause(exc)}") from None
    with contextlib.suppress(OSError):
        os.unlink(temporary)


def _check_target(target: str) -> None:
    if not target:
        raise FileError("''", "an empty path cannot be written")
    if "\x00" in target:
        raise FileError(repr(target), "the path holds a NUL character")
    folder = os.path.dirname(target) or "."
    if os.path.isdir(target):
        raise FileError(target, "is a directory, not a file")
    if not os.path.isdir(folder):
        cause = "is not a directory" if os.path.exists(folder) else "does not exist"
        raise FileError(target, f"cannot be written: its folder {folder!r} {cause}")


def _is_special(target: str) -> bool:
    """True for an existing FIFO or device (followed through links)."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


@contextlib.contextmanager
def _special_output(target: str, mode: str, encoding: str | None, newline: str | None) -> Iterator[IO]:
    """A FIFO or device opened without waiting for a reader (none: an error)."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(fd, True)
    except OSError as exc:
        raise FileError(target, f"cannot be written: {_cause(exc)}") from None
    try:
        with _handle(fd, mode, encoding, newline) as handle:
            yield handle
    except OSError as exc:
        raise FileError(target, f"cannot be written: {_cause(exc)}") from None


def _handle(fd: int, mode: str, encoding: str | None, newline: str | None) -> IO:
    """``fd`` as a file object: bytes for "wb", text (``encoding``, ``newline``) for "w"."""
    text = "b" not in mode
    return open(fd, mode, encoding=encoding if text else None, newline=newline if text else None)


def _temporary_name(target: str) -> str:
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name[:120]}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


STALE_SECONDS = 60
"""Age after which a temporary whose writer is gone is removed."""


def _remove_stale(target: str) -> None:
    """Remove the temporaries of ``target`` that a killed writer left (SIGKILL
    and SIGTERM allow no clean-up): its process is gone from this host and
    the file has not changed for STALE_SECONDS, so a writer on another host
    sharing the folder is never touched while it writes."""
    folder, name = os.path.split(target)
    prefix = f".{name[:120]}."
    try:
        entries = [e for e in os.scandir(folder or ".") if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix):].split("-", 1)[0]
        try:
            if pid.isdigit() and not _alive(int(pid)) and time.time() - entry.stat().st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
        except OSError:
            continue


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _sync_folder(target: str) -> None:
    """fsync the folder, so the rename itself survives a power cut (best effort)."""
    try:
        fd = os.open(os.path.dirname(target) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ reading
def open_regular(path: str | os.PathLike, limit: int | None, what: str = "file") -> io.BufferedReader:
    """``path`` opened for binary reading, if it is a regular file of at most
    ``limit`` bytes (None: any size); otherwise a FileError naming the path, what it is, and
    the limit. Never waits: a FIFO is opened non-blocking and refused."""
    name = os.fspath(path)
    if isinstance(name, str) and "\x00" in name:
        raise FileError(repr(name), f"cannot read the {what}: the path holds a NUL character")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileError(name, f"cannot read the {what}: {_cause(exc)}") from None
    try:
        info = os.fstat(fd)
        kind = _kind(info.st_mode)
        if kind is not None:
            raise FileError(name, f"cannot read the {what}: it is {kind}, not a regular file")
        if limit is not None and info.st_size > limit:
            raise FileError(name, f"the {what} is {info.st_size} bytes, more than the limit of {limit} bytes")
        os.set_blocking(fd, True)
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int, what: str = "file", *, offset: int = 0,
                 length: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`), or
    ``length`` bytes from ``offset`` (which must lie inside the file)."""
    name = os.fspath(path)
    with open_regular(name, limit if length is None else None, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if length is not None:
            if length > limit:
                raise FileError(name, f"{length} bytes of the {what} asked for, more than the limit of {limit}")
            if offset < 0 or offset > size or length > size - offset:
                raise FileError(name, f"the {what} is {size} bytes; bytes [{offset}, +{length}) lie outside it")
        try:
            handle.seek(offset)
            data = handle.read(size - offset if length is None else length)
            if length is None and handle.read(1):
                raise FileError(name, f"the {what} grew while it was read")
        except OSError as exc:
            raise FileError(name, f"cannot read the {what}: {_cause(exc)}") from None
    if length is not None and len(data) != length:
        raise FileError(name, f"the {what} shrank while it was read")
    return data


def check_regular(path: str | os.PathLike, limit: int, what: str = "file") -> int:
    """The size of ``path`` after :func:`open_regular`'s checks, for readers
    that open the file themselves (h5py, Pillow by name)."""
    with open_regular(path, limit, what) as handle:
        return os.fstat(handle.fileno()).st_size


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def inside(folder: str | os.PathLike, relative: str) -> Path:
    """``relative`` resolved inside ``folder`` (links followed), or a
    ValueError saying why it is not: absolute, with ``..``, or leaving the
    folder through a symbolic link."""
    if not relative or "\x00" in relative:
        raise ValueError("the location is empty or holds a NUL character")
    if os.path.isabs(relative):
        raise ValueError("the location is absolute; it must be relative to the model's folder")
    if ".." in relative.split("/"):
        raise ValueError("the location holds '..'; it must stay inside the model's folder")
    base = Path(folder).resolve()
    resolved = (base / relative).resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"the location leaves the model's folder through a symbolic link (to {resolved})")
    return resolved

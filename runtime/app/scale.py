"""tessera-infer on a Ray cluster (``--ray auto|ADDRESS``): the image list
cut into shards, each shard pre-processed by a Ray task and run by one of
several Ray actors, each actor holding one runtime instance (one FWDNXT,
one simulated card), the rows put back in input order.

* The driver reads the binary and the image files and ships their bytes
  through Ray's object store, so the worker machines need Tessera installed
  but no shared file system.
* Each actor takes ``cpus`` CPUs of the cluster and runs its simulator on
  as many threads (TESSERA_NUM_THREADS); a shard's pre-processing task is
  placed on its actor's node (soft affinity), and each actor has two shards
  at most in hand (one running, the next being pre-processed), so the
  driver holds a bounded number of images in flight.
* A runtime actor that dies (its process or its node) is not replaced: the
  shards it held go back to the front of the queue and run on the others.
  A pre-processing actor that dies is replaced by a new one on the same
  node, and the shards it held go back to the front of the queue the same
  way. A shard that fails ``retries + 1`` times, or the death of every
  runtime actor, stops the run with an error. A shard's rows are taken
  once, from the one attempt that returned, so no image is lost or counted
  twice.
* Each runtime actor loads the binary from a copy it writes, atomically,
  into a folder the driver makes (on another machine, a folder of the
  actor's own) and deletes as soon as Init has read it; the driver removes
  its folder at the end, whatever happened, so a run leaves no
  ``tessera-ray-*`` folder behind, even when actors are killed.
* Ray is imported only here, only when asked for (``pip install
  'tessera[ray]'``).

docs/infer_app.md ("Scale-out on Ray") has the cluster set-up."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from runtime.app.images import InferError, Settings
from runtime.app.pipeline import Clock, Prepared, Row, RunResult, prepare, run_prepared
from runtime.files import MAX_BINARY_BYTES, MAX_DATA_BYTES, FileError, read_regular, write_atomic

IN_HAND = 2
"""Shards an actor holds at once: one running, the next pre-processed meanwhile."""
SHARD_IMAGES = 32
"""Images a shard aims at by default (rounded up to whole batches of --max_bs)."""


@dataclass(frozen=True)
class RayOptions:
    """How to use the cluster: ``address`` "auto" (the cluster this machine
    is part of, or RAY_ADDRESS, else a new local one) or a Ray address;
    ``actors`` (default: the cluster's CPUs // ``cpus``), ``cpus`` per
    actor, ``shard`` images per shard (default: about
    :data:`SHARD_IMAGES`, whole batches), ``retries`` of a failed shard,
    and how long actors may take to start (``start_timeout_s``)."""

    address: str = "auto"
    actors: int | None = None
    cpus: int = 1
    shard: int | None = None
    retries: int = 2
    start_timeout_s: float = 600.0


def import_ray():
    """Ray, or an error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InferError(f"--ray needs Ray, an optional extra ({exc}): pip install 'tessera[ray]'") from None
    return ray


def run_on_ray(binary: str | os.PathLike, paths: Sequence[Path], settings: Settings, options: RayOptions, *,
               max_bs: int = 1, workers: int = 1, top: int = 5, fc: np.ndarray | None = None,
               sink: Callable[[Row], None] | None = None, skipped: Callable[[str, str], None] | None = None,
               warn: Callable[[str], None] | None = None, started: Callable[[list], None] | None = None) -> RunResult:
    """:func:`runtime.app.pipeline.run_images` over a Ray cluster: the same
    rows in input order (``sink`` and ``skipped`` called in input order as
    shards complete), the wall time from the moment the actors are ready.
    ``warn`` gets a line for each actor failure (default: standard error);
    ``started`` the handles of the runtime actors and of their
    pre-processing actors once they are up (two lists, to watch them)."""
    ray = import_ray()
    warn = warn or (lambda line: print(line, file=sys.stderr))
    try:
        data = read_regular(binary, MAX_BINARY_BYTES, "binary")
    except FileError as exc:
        raise InferError(f"--xclbin: {exc}") from None
    joined = _connect(ray, options.address)
    folder = None
    try:
        folder = tempfile.mkdtemp(prefix="tessera-ray-")
        pool = _Actors(ray, options, data, folder, Path(binary).name, max_bs, top, fc, len(paths), workers)
        try:
            if started is not None:
                started(list(pool.handles), list(pool.preps))
            return _Run(ray, pool, paths, settings, options, max_bs, warn).go(sink, skipped)
        finally:
            pool.close()
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if joined:
            ray.shutdown()


def _connect(ray, address: str) -> bool:
    """Join the cluster; True when this call did (and so must leave it).
    An address is probed first: Ray itself keeps retrying an unreachable
    one for minutes, and "auto" would follow the note a stopped cluster
    leaves behind in Ray's temporary folder."""
    if ray.is_initialized():
        return False
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS") or _last_local_cluster()
        target = "auto" if found and _unreachable(found) is None else "local"
    else:
        why = _unreachable(address)
        if why is not None:
            raise InferError(f"--ray {address!r}: cannot reach the Ray cluster there ({why}); start one with "
                             "`ray start --head` or give its address (host:port)")
        target = address
    try:
        ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError, ray.exceptions.RayError) as exc:
        explicit = target not in ("auto", "local") and os.environ.get("RAY_AUTH_MODE", "").lower() != "token"
        hint = ("; if the cluster uses token authentication (`ray start`'s default), set RAY_AUTH_MODE=token and "
                "put its token on this machine (~/.ray/auth_token or RAY_AUTH_TOKEN): Ray sends no token to an "
                "address given explicitly unless told to") if explicit else ""
        raise InferError(f"--ray {address!r}: cannot join the Ray cluster: {str(exc).splitlines()[0]}{hint}") \
            from None
    return True


def _last_local_cluster() -> str | None:
    """The address `ray start` on this machine recorded (maybe stale)."""
    folder = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    try:
        return Path(folder, "ray", "ray_current_cluster").read_text().split()[0]
    except (OSError, IndexError):
        return None


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing listens at ``address`` ([ray://]host:port), or None."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return f"not an address of the form host:port or ray://host:port: {address!r}"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


class _Actors:
    """The lanes: each a runtime actor and, on its node, a pre-processing
    actor (its tasks are Ray actor tasks in a process started once: plain
    tasks taking no CPU would start and stop worker processes as they come);
    their nodes, and which lanes are alive."""

    def __init__(self, ray, options: RayOptions, binary: bytes, folder: str, name: str, max_bs: int, top: int, fc,
                 images: int, workers: int):
        cpus = options.cpus
        have = ray.cluster_resources().get("CPU", 0.0)
        count = options.actors or max(1, int(have // cpus))
        if count * cpus > have:
            raise InferError(f"--ray_actors {count} x --ray_cpus {cpus} = {count * cpus} CPUs; the Ray cluster has "
                             f"{have:g}")
        count = min(count, max(1, images))
        runtime = ray.remote(num_cpus=cpus, max_restarts=0,
                             runtime_env={"env_vars": {"TESSERA_NUM_THREADS": str(cpus)}})(_Runtime)
        self._preprocessor = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=IN_HAND)(_Preprocessor)
        self._workers = workers
        blob = ray.put(binary)
        self.ray = ray
        self.handles = [runtime.remote(blob, name, number, max_bs, top, fc, folder) for number in range(count)]
        self.preps: list = []
        try:
            self.nodes = ray.get([h.node.remote() for h in self.handles], timeout=options.start_timeout_s)
            self.preps = [self._prep_on(node) for node in self.nodes]
            ray.get([prep.node.remote() for prep in self.preps], timeout=options.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise InferError(f"{count} Ray actors of {cpus} CPU(s) did not all start within "
                             f"{options.start_timeout_s:g} s (the cluster has {have:g} CPUs)") from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise InferError(f"a Ray actor could not load {name!r}: {_cause(exc)}") from None
        self.alive = [True] * count
        self.held = [0] * count

    def _prep_on(self, node: str):
        """A new pre-processing actor, placed on ``node`` if it can be."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        placement = NodeAffinitySchedulingStrategy(node, soft=True)
        return self._preprocessor.options(scheduling_strategy=placement).remote(self._workers)

    def replace_prep(self, lane: int) -> None:
        """A new pre-processing actor for ``lane`` in place of one that died
        (killed at the end with the others; the dead one needs no kill)."""
        self.preps[lane] = self._prep_on(self.nodes[lane])

    def free(self) -> list[int]:
        """The live lanes with room for one more shard, least busy first."""
        return sorted((a for a in range(len(self.handles)) if self.alive[a] and self.held[a] < IN_HAND),
                      key=lambda a: self.held[a])

    def close(self) -> None:
        for handle in self.handles + self.preps:
            try:
                self.ray.kill(handle)
            except Exception:  # noqa: BLE001 - an actor already gone
                pass


@dataclass(frozen=True)
class _Flight:
    """A shard sent: to which lane, through which pre-processing actor, and
    the reference to its pre-processed images (to tell whose death failed it)."""

    shard: int
    lane: int
    prep: Any
    prepared: Any


class _Run:
    """The driver's loop: dispatch shards, gather them, emit in order."""

    def __init__(self, ray, pool: _Actors, paths: Sequence[Path], settings: Settings, options: RayOptions,
                 max_bs: int, warn):
        self.ray, self.pool, self.paths, self.settings = ray, pool, list(paths), settings
        self.options, self.warn = options, warn
        size = options.shard or max(1, min(SHARD_IMAGES, -(-len(paths) // (4 * len(pool.handles)))))
        size = -(-size // max_bs) * max_bs
        self.shards = [range(first, min(first + size, len(paths))) for first in range(0, len(paths), size)]
        self.failures = [0] * len(self.shards)

    def go(self, sink, skipped) -> RunResult:
        ray, pool = self.ray, self.pool
        clock = Clock()
        waiting = deque(range(len(self.shards)))
        flying: dict = {}
        done: dict[int, RunResult] = {}
        result = RunResult([], [], 0.0)
        emitted = 0
        while emitted < len(self.shards):
            while waiting and (free := pool.free()):
                ref, flight = self._send(waiting.popleft(), free[0], clock)
                flying[ref] = flight
                pool.held[flight.lane] += 1
            if not flying:
                raise InferError(f"every Ray actor ({len(pool.handles)}) has failed; "
                                 f"{len(self.shards) - emitted} shard(s) of images were not run")
            (ref,), _ = ray.wait(list(flying), num_returns=1)
            flight = flying.pop(ref)
            pool.held[flight.lane] -= 1
            try:
                done[flight.shard] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                # a dead actor's error reaches a task that depended on it as a RayTaskError that is also a RayActorError
                if isinstance(exc, ray.exceptions.RayTaskError) and not isinstance(exc, ray.exceptions.RayActorError):
                    raise InferError(f"Ray actor {flight.lane} on shard {self._name(flight.shard)}: "
                                     f"{_cause(exc)}") from None
                self._failed(flight, exc, waiting)
                continue
            while emitted in done:
                part = done.pop(emitted)
                for name, why in part.skipped:
                    result.skipped.append((name, why))
                    if skipped is not None:
                        skipped(name, why)
                for row in part.rows:
                    result.rows.append(row)
                    if sink is not None:
                        sink(row)
                emitted += 1
        result.wall_s = clock()
        return result

    def _send(self, shard: int, lane: int, clock: Clock) -> tuple[Any, _Flight]:
        """The shard's files (regular files only, of at most MAX_DATA_BYTES:
        a FIFO is skipped with its reason, never waited on) to the lane's
        pre-processing actor, its output to the lane's runtime actor."""
        sources = []
        for index in self.shards[shard]:
            path = self.paths[index]
            try:
                sources.append((index, path.name, read_regular(path, MAX_DATA_BYTES, "image")))
            except FileError as exc:
                sources.append((index, path.name, exc.cause))
        prep = self.pool.preps[lane]
        prepared = prep.prepare.remote(sources, self.settings, clock.origin, clock())
        return self.pool.handles[lane].run.remote(prepared, clock.origin), _Flight(shard, lane, prep, prepared)

    def _failed(self, flight: _Flight, exc, waiting: deque) -> None:
        """A shard lost to a dead actor (or Ray): replace the lane's dead
        pre-processing actor, or retire the lane whose runtime actor died;
        the shard goes back to the front of the queue, up to its retries."""
        lane, shard = flight.lane, flight.shard
        if self._prep_died(flight):
            if self.pool.preps[lane] is flight.prep:
                self.pool.replace_prep(lane)
                self.warn(f"tessera-infer: warning: Ray pre-processing actor {lane} failed ({type(exc).__name__}); "
                          "a new one replaces it and its shards run again")
        elif isinstance(exc, self.ray.exceptions.RayActorError) and self.pool.alive[lane]:
            self.pool.alive[lane] = False
            self.warn(f"tessera-infer: warning: Ray actor {lane} failed ({type(exc).__name__}); its shards go to "
                      "the other actors")
        self.failures[shard] += 1
        if self.failures[shard] > self.options.retries:
            raise InferError(f"shard {self._name(shard)} failed {self.failures[shard]} times on the Ray cluster; "
                             f"last: {_cause(exc)}")
        waiting.appendleft(shard)

    def _prep_died(self, flight: _Flight) -> bool:
        """Whether the shard's pre-processing actor died before it gave the
        shard's images (its output then holds that actor's death)."""
        ray = self.ray
        if not ray.wait([flight.prepared], timeout=0)[0]:
            return False
        try:
            ray.get(flight.prepared)
        except ray.exceptions.RayActorError:
            return True
        except ray.exceptions.RayError:
            pass
        return False

    def _name(self, shard: int) -> str:
        span = self.shards[shard]
        return f"{shard} ({self.paths[span[0]].name} .. {self.paths[span[-1]].name})"


def _cause(exc) -> str:
    """What went wrong inside Ray: the user's error when Ray carries it,
    else the last line of Ray's message (its traceback ends with the error)."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return str(cause) or type(cause).__name__
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


class _Preprocessor:
    """A Ray actor next to a runtime actor: a shard's images pre-processed
    on ``workers`` threads, in order (an image whose bytes could not be read
    on the driver comes back with the reason)."""

    def __init__(self, workers: int):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-infer-pre")

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def prepare(self, sources: list, settings: Settings, origin: float, start: float) -> list[Prepared]:
        """Each (index, name, bytes) pre-processed; (index, name, reason) for a file the driver could not read."""
        clock = Clock(origin)

        def one(source) -> Prepared:
            index, name, data = source
            if isinstance(data, str):
                return Prepared(index, name, None, f"{name}: {data}", {"start": start, "preprocessed": clock()})
            return prepare(index, (name, data), settings, clock, start)

        return list(self.pool.map(one, sources))


class _Runtime:
    """A Ray actor: one FWDNXT instance with the binary loaded."""

    def __init__(self, binary: bytes, name: str, number: int, max_bs: int, top: int, fc, folder: str):
        from runtime import FWDNXT

        self.ie = FWDNXT()
        _init_from_copy(self.ie, binary, f"actor{number}-{name}", folder if os.path.isdir(folder) else None)
        self.number, self.max_bs, self.top, self.fc = number, max_bs, top, fc
        self.runs = 0
        """Device runs so far, over the shards (each row names its run)."""

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(self, items: list[Prepared], origin: float) -> RunResult:
        result = run_prepared(self.ie, items, max_bs=self.max_bs, top=self.top, fc=self.fc, clock=Clock(origin),
                              instance=self.number, first_run=self.runs)
        self.runs = max((row.run + 1 for row in result.rows), default=self.runs)
        return result


def _init_from_copy(ie, binary: bytes, name: str, folder: str | None) -> None:
    """Init ``ie`` from a copy of ``binary`` written atomically as ``name``
    in ``folder`` (the driver's, which the driver removes at the end) or,
    where that folder is not (another machine), in a folder of its own; the
    copy is deleted as soon as Init has read it (the FWDNXT holds the binary
    in memory), so the actor leaves nothing behind however it ends later."""
    own = tempfile.mkdtemp(prefix="tessera-ray-") if folder is None else None
    path = os.path.join(folder or own, name)
    try:
        write_atomic(path, binary)
        ie.Init(path, "")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)

"""Tessera's own GEMM engine, on Tessera's thread pool.

``sgemm`` / ``sgemm_batched`` (float32) and ``igemm`` / ``igemm_batched``
(exact int8 -> int32) run LLVM-compiled microkernels
(:mod:`runtime.gemm.microkernel`) from Numba loops (:mod:`runtime.gemm.sgemm`)
over :mod:`runtime.parallel`'s threads; ``pack_weights`` packs a constant
operand once for many calls (:mod:`runtime.gemm.pack`); ``available()`` says
whether this CPU can run them (x86 with AVX2 and FMA).
"""
from runtime.gemm.family import available, host_isa
from runtime.gemm.igemm import igemm, igemm_batched
from runtime.gemm.microkernel import kernel_addresses
from runtime.gemm.pack import PackedMatrix, pack_weights
from runtime.gemm.sgemm import PackedProduct, lower_sgemm, sgemm, sgemm_batched, sgemm_record, strip_template
from runtime.gemm.tasks import run_strip

__all__ = ["available", "host_isa", "kernel_addresses", "PackedMatrix", "PackedProduct", "pack_weights", "sgemm",
           "sgemm_batched", "lower_sgemm", "sgemm_record", "strip_template", "run_strip", "igemm", "igemm_batched"]

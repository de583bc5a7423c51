"""CPU kernels: pool."""

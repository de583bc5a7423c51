"""CPU kernels: gather."""

"""CPU kernels: quant."""

"""Op definitions: quant."""

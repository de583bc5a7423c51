"""Graph passes: the pass infrastructure (infra.py) and every pass, one per file;
quantization in passes/quant/. compiler/pipeline.py says which run, in which order."""

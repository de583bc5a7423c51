import os

os.environ.setdefault("TESSERA_NUM_THREADS", "2")

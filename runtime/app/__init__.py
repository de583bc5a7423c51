"""The batch inference application ``tessera-infer`` (docs/infer_app.md):
a folder of images through a compiled binary on the FWDNXT API, with a
pre-processing pool, a device thread and an in-order logger. Needs only
runtime/ and, when images are read, Pillow."""

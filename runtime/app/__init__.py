"""The batch inference application ``tessera-infer`` (docs/infer_app.md):
a folder of images through a compiled binary on the FWDNXT API, with a
pre-processing pool, a device thread and an in-order logger. Needs only
runtime/ and, when images are read, Pillow."""


def main(argv=None) -> int:
    """The ``tessera-infer`` command (:func:`runtime.app.infer.main`)."""
    from runtime.command import main_of

    return main_of("tessera-infer", "runtime.app.infer", argv)

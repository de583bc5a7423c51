"""The batch inference application ``tessera-infer`` (docs/infer_app.md):
a folder of images through a compiled binary on the FWDNXT API, with a
pre-processing pool, a device thread and an in-order logger. Needs only
runtime/ and, when images are read, Pillow."""


def main(argv=None) -> int:
    """The ``tessera-infer`` command (:func:`runtime.app.infer.main`); an
    error while the app is imported ends it in one line too."""
    from runtime.errors import TesseraError

    try:
        from runtime.app.infer import main as run
    except TesseraError:
        from runtime.command import import_failed

        return import_failed("tessera-infer", argv)
    return run(argv)

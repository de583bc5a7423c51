"""A call on a thread of its own, for tests of calls that block."""
from __future__ import annotations

import threading


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    """Run fn(*args) on a daemon thread; the dict gets its 'value' or 'error'."""
    box = {}

    def body():
        try:
            box["value"] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box

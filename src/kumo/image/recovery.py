"""Start-up sweep after a crash (filled in by the image part)."""

from kumo.runtime import Runtime


def recover(runtime: Runtime) -> None:
    runtime.store.sweep_partial()

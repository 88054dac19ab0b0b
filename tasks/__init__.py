"""The job types, one module per domain, each declaring its type(s) next to the code that runs them.

``load()`` imports every module of this package, so that each one registers its job types; the
worker's routes and schedule, the dispatchers and the API's bodies are derived from what it finds.
Adding a job type is adding a module here.
"""

import importlib
import pkgutil

from mwap import jobtypes


def modules() -> list[str]:
    """The dotted names of this package's modules and sub-packages (the provider adapters excluded:
    they declare no job type)."""
    return [
        f"{__name__}.{info.name}"
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)
        if info.name != "providers" and not info.name.startswith("_")
    ]


def load() -> dict[str, jobtypes.JobType]:
    """Import every job module (once) and return the registry of job types."""
    for name in modules():
        importlib.import_module(name)
    jobtypes.mark_loaded()
    from tasks import dispatch  # noqa: PLC0415 - after every type is declared

    dispatch.register_dispatchers()
    return jobtypes.job_types()

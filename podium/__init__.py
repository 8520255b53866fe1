"""podium: computer-vision competition pipelines from one recipe file, exactly resumable."""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Run a recipe (see :func:`podium.api.run`)."""
    from podium.api import run as _run

    return _run(*args, **kwargs)


def status(*args, **kwargs):
    """Stage states of a recipe (see :func:`podium.api.status`)."""
    from podium.api import status as _status

    return _status(*args, **kwargs)


def compare(*args, **kwargs):
    """Compare two runs' per-epoch metrics (see :func:`podium.api.compare`)."""
    from podium.api import compare as _compare

    return _compare(*args, **kwargs)

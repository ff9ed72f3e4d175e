"""``azimds.pytest_plugin``: the pytest fixtures' documented module path (see ``azimds.emulator.pytest_plugin``)."""

from .emulator.pytest_plugin import DEFAULT_FLEET, imds, imds_fleet, pytest_configure

__all__ = ["DEFAULT_FLEET", "imds", "imds_fleet", "pytest_configure"]

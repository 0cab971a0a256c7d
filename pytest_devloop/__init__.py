"""pytest-devloop: test-driven iteration on Kubernetes infrastructure.

The package is a pytest plugin (registered through the ``pytest11`` entry point as
``pytest_devloop.plugin``) plus a small command line (``python -m pytest_devloop``).
Nothing heavy is imported here: the plugin must load in a few milliseconds in projects
that do not use it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

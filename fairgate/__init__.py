"""fairgate: an OpenAI-compatible LLM gateway with fair, locality-aware scheduling and
verifiable metering of hidden tokens.

The concept packages live in the repository's top-level folders and are installed under this
namespace: ``fairgate.gateway``, ``fairgate.scheduler``, ``fairgate.replicas``,
``fairgate.metering``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fairgate")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

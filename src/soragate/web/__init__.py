"""The web studio (``/``) and admin console (``/admin``): server-rendered shells and plain
ES modules shipped in the package. Every page talks to the same public HTTP API that
clients use; there is no private back door for the UI."""

from soragate.web.routes import router

__all__ = ["router"]

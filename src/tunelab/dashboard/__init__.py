"""The web dashboard: a FastAPI app over a storage (``tunelab dashboard --storage URL``).

An optional layer: it needs ``pip install 'tunelab[dashboard]'`` (FastAPI, uvicorn, plotly).
"""

from tunelab.dashboard.app import create_app
from tunelab.dashboard.serve import serve_in_thread

__all__ = ["create_app", "serve_in_thread"]

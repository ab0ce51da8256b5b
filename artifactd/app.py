"""Entry point for gunicorn: `gunicorn 'artifactd.app:create_app()' --worker-class ...`."""

from artifactd.web.app import create_app

__all__ = ["create_app"]

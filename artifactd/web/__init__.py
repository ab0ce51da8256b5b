"""The HTTP edge: app factory, handlers, middlewares."""

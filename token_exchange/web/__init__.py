"""The HTTP side: the application and its routes, connections, handlers, error answers, access log."""

"""The service's command line: Go-style flags, its configuration, start-up and workers."""

"""token-exchange: turns long-lived API keys into short-lived signed JWTs."""

__version__ = "0.1.0"

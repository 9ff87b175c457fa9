"""Checking presented API keys: key formats, secret hashes, caches, admission of bcrypt checks."""

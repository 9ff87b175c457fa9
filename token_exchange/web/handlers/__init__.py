"""One RequestHandler class per endpoint; errors.py holds every error body."""

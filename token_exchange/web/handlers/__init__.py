"""One RequestHandler class per endpoint; base.py and token.py hold what they share."""

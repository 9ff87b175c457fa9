"""The signing key file, the tokens' claims, and compact JWS signatures."""

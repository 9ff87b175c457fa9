"""The operator tools (create-integration and the others) and what they share."""

"""Operator tools, installed as the package token_exchange_tools."""

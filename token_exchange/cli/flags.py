"""Go-style command-line flags, shared by the service and the tools.

Like Go's flag package (and m-lab/go's flagx.ArgsFromEnv) every flag is
spelled -name, --name, -name=value or --name=value, and can be set from the
environment variable named by upper-casing it with '-' and '.' turned into
'_'. The command line wins over the environment.
"""

import argparse
import sys

import configargparse

from token_exchange.store import DEFAULT_STORE_TIMEOUT_SECONDS, STORE_HELP, check_store_spec


class FlagParser(configargparse.ArgumentParser):
    def __init__(self, prog, description):
        super().__init__(
            prog=prog,
            description=description,
            allow_abbrev=False,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )

    def _get_option_tuples(self, option_string):
        # Go's flag package knows no abbreviations, and allow_abbrev=False
        # does not stop them for single-dash long flags on every Python.
        return []

    def error(self, message):
        # One clear line, not argparse's usage dump.
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def env_name(flag):
    return flag.upper().replace("-", "_").replace(".", "_")


def add_flag(parser, name, help, **kwargs):
    dest = name.replace("-", "_").replace(".", "_")
    parser.add_argument(f"-{name}", f"--{name}", dest=dest, env_var=env_name(name), help=help, **kwargs)


def checked(check, what):
    """Turn a checking function into an argparse type with a clear message."""

    def convert(value):
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e) or f"invalid {what} {value!r}") from None

    convert.__name__ = what
    return convert


def _decimal(value):
    """int() of plain ASCII digits only (int() also takes ' 8', '1_0' and other scripts' digits)."""
    if not (value.isascii() and value.isdigit()):
        raise ValueError
    return int(value)


def _port(value):
    try:
        port = _decimal(value)
    except ValueError:
        raise ValueError(f"invalid port {value!r}: not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {value!r}: must be 0..65535")
    return port


def split_listen_address(value):
    """(host, port) of a [HOST]:PORT address as Go's net.SplitHostPort reads it: an IPv6 host in brackets
    ("[::1]:9990"), given without them. An empty host means every interface."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"invalid listen address {value!r}: expected [HOST]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"invalid listen address {value!r}: an IPv6 host goes in brackets, as in [::1]:9990")
    return host, _port(port)


def _listen_address(value):
    split_listen_address(value)
    return value


# Datastore and SQLite both keep integers as signed 64-bit.
MAX_TIER = 2**63 - 1


def _tier(value):
    try:
        tier = _decimal(value)
    except ValueError:
        tier = -1
    if not 0 <= tier <= MAX_TIER:
        raise ValueError(f"invalid tier {value!r}: expected a whole number from 0 to {MAX_TIER}")
    return tier


# Proxies in front of the service that append to X-Forwarded-For: a chain longer than this is a mistake.
MAX_TRUSTED_PROXIES = 10


def _proxy_count(value):
    try:
        count = _decimal(value)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_TRUSTED_PROXIES:
        raise ValueError(f"invalid number {value!r}: expected a whole number from 0 to {MAX_TRUSTED_PROXIES}")
    return count


def _positive_int(value):
    try:
        number = _decimal(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"invalid number {value!r}: expected a whole number of 1 or more")
    return number


def _positive_seconds(value):
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 600:  # also refuses nan and inf
        raise ValueError(f"invalid duration {value!r}: expected seconds, more than 0 and at most 600")
    return seconds


def _non_negative_seconds(value):
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 600:  # also refuses nan and inf
        raise ValueError(f"invalid duration {value!r}: expected seconds, 0 to 600")
    return seconds


port_number = checked(_port, "port")
listen_address = checked(_listen_address, "listen address")
tier_number = checked(_tier, "tier")
positive_int = checked(_positive_int, "number")
proxy_count = checked(_proxy_count, "number")
store_spec = checked(check_store_spec, "store")


positive_seconds = checked(_positive_seconds, "duration")
non_negative_seconds = checked(_non_negative_seconds, "duration")


def add_store_flag(parser):
    add_flag(parser, "store", STORE_HELP, type=store_spec, default="datastore")
    add_flag(
        parser,
        "store-timeout",
        "seconds a key-store call may take, retries included",
        type=positive_seconds,
        default=DEFAULT_STORE_TIMEOUT_SECONDS,
    )

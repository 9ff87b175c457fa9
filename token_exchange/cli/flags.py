"""Go-style command-line flags, shared by the service and the tools.

Like Go's flag package every flag is spelled -name, --name, -name=value or
--name=value. The service reads every flag from the environment too, as the
Go service does (m-lab/go's flagx.ArgsFromEnv): the variable named by
upper-casing the flag with '-' and '.' turned into '_'. A tool reads only the
variables its add_flag() calls name. The command line wins over the
environment.
"""

import argparse
import os
import sys

import configargparse

from token_exchange.store import DEFAULT_STORE_TIMEOUT_SECONDS, STORE_HELP, check_store_spec

ENVIRONMENT_EPILOG = "Command-line values override environment variables, which override defaults."


class FlagParser(configargparse.ArgumentParser):
    def __init__(self, prog, description, env_from_flag_names=False):
        """env_from_flag_names: every flag is read from the variable env_name() gives it, as the Go service's."""
        super().__init__(
            prog=prog,
            description=description,
            allow_abbrev=False,
            add_help=False,
            add_env_var_help=False,  # add_flag() writes the names into each flag's help
        )
        # Go's flag package takes -help as well as -h and --help.
        self.add_argument("-h", "-help", "--help", action="help", help="show this help message and exit")
        self.env_from_flag_names = env_from_flag_names
        self.env_flags: list[tuple[argparse.Action, tuple[str, ...]]] = []  # (flag, variables it is read from)
        self.environment_used: dict[str, str] = {}  # after parse_args: {variable: value} of those that set a flag

    def _get_option_tuples(self, option_string):
        # Go's flag package knows no abbreviations, and allow_abbrev=False
        # does not stop them for single-dash long flags on every Python.
        return []

    def error(self, message):
        # One clear line, not argparse's usage dump.
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)

    def parse_args(self, args=None, namespace=None, config_file_contents=None, env_vars=os.environ):
        """Parse the command line, then the environment for flags it does not give.

        A flag read from two variables (a tool's own name and the service's, say) takes their value
        when they agree; when they disagree it is an error, since either could be the one meant."""
        args = sys.argv[1:] if args is None else list(args)
        chosen, conflicts = {}, []
        self.environment_used = {}
        for action, names in self.env_flags:
            if configargparse.already_on_command_line(args, action.option_strings, self.prefix_chars):
                continue
            found = {name: env_vars[name] for name in names if name in env_vars}
            if len(set(found.values())) > 1:
                settings = " and ".join(f"{name}={value!r}" for name, value in found.items())
                flag = action.option_strings[0]
                conflicts.append(f"environment variables {settings} disagree: unset one, or give {flag}")
            elif found:
                chosen[names[0]] = next(iter(found.values()))  # the name add_flag() gave configargparse
                self.environment_used.update(found)
        parsed = super().parse_args(args, namespace, config_file_contents, env_vars=chosen)
        if conflicts:  # after parsing, so that -h still prints the help
            self.error(conflicts[0])
        return parsed


def env_name(flag):
    return flag.upper().replace("-", "_").replace(".", "_")


def add_flag(parser, name, help, env=None, **kwargs):
    """Add -name (and --name) to parser.

    env: the environment variables the flag is read from; by default env_name(name) when the parser
    reads every flag from the environment, else none.
    """
    dest = name.replace("-", "_").replace(".", "_")
    if env is None:
        env = (env_name(name),) if parser.env_from_flag_names else ()
    elif isinstance(env, str):
        env = (env,)
    if env:
        help += f" [env var: {' or '.join(env)}]"
        parser.epilog = ENVIRONMENT_EPILOG
    default = kwargs.get("default")
    if default not in (None, "") and kwargs.get("action") != "store_true":
        help += " (default: %(default)s)"
    if env:
        kwargs["env_var"] = env[0]  # parse_args() hands configargparse the chosen value under this name
    action = parser.add_argument(f"-{name}", f"--{name}", dest=dest, help=help, **kwargs)
    if env:
        parser.env_flags.append((action, env))
    return action


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
    try:
        host.encode("idna")  # as the resolver will: an empty or over-long label would fail there with a traceback
    except UnicodeError:
        raise ValueError(f"invalid listen address {value!r}: {host!r} is no host name") from None
    return host, _port(port)


def _listen_address(value):
    split_listen_address(value)
    return value


# Datastore and SQLite both keep integers as signed 64-bit.
MAX_TIER = 2**63 - 1


def _whole_number_from(value, low, high, what="number"):
    """value as an int from low to high; ValueError naming the range otherwise."""
    try:
        number = _decimal(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValueError(f"invalid {what} {value!r}: expected a whole number from {low} to {high}")
    return number


def _tier(value):
    return _whole_number_from(value, 0, MAX_TIER, "tier")


# Proxies in front of the service that append to X-Forwarded-For: a chain longer than this is a mistake.
MAX_TRUSTED_PROXIES = 10


def _proxy_count(value):
    return _whole_number_from(value, 0, MAX_TRUSTED_PROXIES)


def _positive_int(value):
    try:
        number = _decimal(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"invalid number {value!r}: expected a whole number of 1 or more")
    return number


# -workers forks that many processes at once: a typo such as 1000000 must not exhaust the machine. One worker
# per CPU is all the service can use; a small machine may still run a few more.
MAX_WORKERS = max(64, os.cpu_count() or 1)


def _worker_count(value):
    return _whole_number_from(value, 1, MAX_WORKERS)


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
worker_count = checked(_worker_count, "number")
proxy_count = checked(_proxy_count, "number")
store_spec = checked(check_store_spec, "store")


positive_seconds = checked(_positive_seconds, "duration")
non_negative_seconds = checked(_non_negative_seconds, "duration")


def add_store_flag(parser):
    # STORE for the tools too: one exported variable names the store for the service and its tools.
    add_flag(parser, "store", STORE_HELP, env="STORE", type=store_spec, default="datastore")
    add_flag(
        parser,
        "store-timeout",
        "seconds a key-store call may take, retries included",
        type=positive_seconds,
        default=DEFAULT_STORE_TIMEOUT_SECONDS,
    )

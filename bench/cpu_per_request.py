"""CPU time per request: where a warm exchange's time goes beyond a bare request.

Runs, pinned to core 0, the bare Tornado server (bare_server.py), the
service, and the service with its signatures replaced by zero bytes
(service_without_signature.py); drives each in turn with wrk on the other
core, for several interleaved rounds; and reads each server's CPU time
(utime + stime from /proc) over each run. Also times the RS256 signature
alone in a loop on core 0, once per round. Prints per-request medians and
what they imply:

- own work beyond a bare request: the exchange without its signature,
  against the bare request;
- the signature inside the service: the exchange with its signature
  minus the one without, against the loop's figure;
- the warm ratio in CPU time: (exchange − signature alone) / bare, the
  target's formula with CPU time in place of 1 / requests per second.

CPU time leaves out the time the machine gives to other guests, which
request rates include; a busy host still slows the code itself.

--tree NAME=DIR (repeatable) adds one more service server to the rounds,
started as the "exchange" one is (same key file, store, warm key and core)
but running `python -m token_exchange` with DIR as its working directory,
so that DIR's copy of the package is the one imported (the script checks
this first). --tree-flags NAME="FLAGS" passes extra service flags to that
tree's server. The first --tree is the baseline: for each other tree the
script also prints the median over rounds of (tree - baseline), in µs and
as a percentage of the baseline's figure in the same round, with the range.
Comparing two checkouts of the code, e.g. git worktrees with and without
one change:

    .venv/bin/python bench/cpu_per_request.py               # 7 rounds of 3 s per server
    .venv/bin/python bench/cpu_per_request.py --rounds 3    # a quick look
    .venv/bin/python bench/cpu_per_request.py --tree base=/tmp/ab/base --tree variant=/tmp/ab/variant \
        --tree-flags variant="-access-log all"
"""

import argparse
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import tempfile

import run_bench
from run_bench import free_port, make_keys, pin, start, wait_for_port

from token_exchange.store.sqlite import SQLiteKeyStore

BENCH = pathlib.Path(__file__).resolve().parent


def cpu_seconds(pid):
    """utime + stime of every thread of pid so far."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(process, port, body, seconds, connections, workdir):
    """Microseconds of the server's CPU time per request over one wrk run; None if any request failed."""
    before = cpu_seconds(process.pid)
    run = run_bench.wrk(port, "/v0/token/integration", body, seconds, connections, workdir)
    used = cpu_seconds(process.pid) - before
    if run["failed"] or run.get("socket_errors"):
        return None
    return 1e6 * used / run["requests"]


def summary(values):
    return f"{statistics.median(values):6.0f} µs   ({min(values):.0f} to {max(values):.0f})"


def named_values(pairs, option):
    """{NAME: VALUE} from NAME=VALUE arguments, in order."""
    named = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            sys.exit(f"{option} takes NAME=VALUE, not {pair!r}")
        named[name] = value
    return named


def check_imports_from(tree):
    """Exit unless `python -m token_exchange` run in tree imports tree's own copy of the package."""
    imported = subprocess.run(
        [sys.executable, "-c", "import token_exchange; print(token_exchange.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not pathlib.Path(imported).resolve().is_relative_to(pathlib.Path(tree).resolve()):
        sys.exit(f"run in {tree}, Python imports token_exchange from {imported}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=3, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=10, help="wrk connections")
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="one more service server, run from source tree DIR; the first is the baseline",
    )
    parser.add_argument(
        "--tree-flags",
        action="append",
        default=[],
        metavar='NAME="FLAGS"',
        help="extra service flags for tree NAME's server",
    )
    args = parser.parse_args()
    trees = named_values(args.tree, "--tree")
    tree_flags = {name: shlex.split(flags) for name, flags in named_values(args.tree_flags, "--tree-flags").items()}
    if set(trees) & {"bare", "exchange", "without signature", "signature alone"} or set(tree_flags) - set(trees):
        sys.exit("each --tree needs a name of its own, and each --tree-flags the name of a --tree")
    for tree in trees.values():
        check_imports_from(tree)
    print(f"machine: {run_bench.machine_description()}", flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        key_path, signing_key = run_bench.write_signing_key(workdir)
        db_path = pathlib.Path(workdir) / "keys.db"
        store = SQLiteKeyStore(str(db_path))
        warm_key = make_keys(store, 1, 4, "warm")[0]  # bcrypt's lowest cost: only the first exchange checks it
        store.close()
        body = run_bench.exchange_body(warm_key).decode()

        ports = {name: free_port() for name in ("bare", "exchange", "without signature", *trees)}
        servers = {
            "bare": start([sys.executable, str(run_bench.BARE_SERVER), str(ports["bare"])]),
            "exchange": start(run_bench.service_command(ports["exchange"], key_path, db_path)),
            "without signature": start(
                run_bench.service_command(
                    ports["without signature"],
                    key_path,
                    db_path,
                    program=(str(BENCH / "service_without_signature.py"),),
                )
            ),
        }
        for name, tree in trees.items():
            servers[name] = subprocess.Popen(
                run_bench.service_command(ports[name], key_path, db_path, *tree_flags.get(name, ())),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tree,
            )
        try:
            for name, process in servers.items():
                wait_for_port(ports[name])
                pin(process.pid, {0})
            run_bench.prime_warm_key(
                (ports["exchange"], ports["without signature"], *(ports[name] for name in trees)), body
            )
            figures = {name: [] for name in (*servers, "signature alone")}
            for _ in range(args.rounds):
                for name, process in servers.items():
                    micros = cpu_per_request(process, ports[name], body, args.seconds, args.connections, workdir)
                    if micros is None:
                        sys.exit(f"{name}: some requests failed, its figure would not be a request's")
                    figures[name].append(micros)
                figures["signature alone"].append(
                    1e6 * run_bench.on_server_core(run_bench.signature_seconds, signing_key)
                )
        finally:
            for process in servers.values():
                process.terminate()
                process.wait(10)

    rounds = list(zip(figures["bare"], figures["exchange"], figures["without signature"], figures["signature alone"]))
    print(
        f"CPU time per request, median of {args.rounds} rounds (range), wrk -c{args.connections}, "
        f"servers pinned to core 0:"
    )
    for name, values in figures.items():
        print(f"  {name:34s}{summary(values)}")
    print("Each round's own figures:")
    print(
        f"  {'own work beyond a bare request':34s}"
        f"{summary([without - bare for bare, _, without, _ in rounds])}, "
        f"{statistics.median(without / bare for bare, _, without, _ in rounds):.2f} x bare, target <= 1.10"
    )
    print(
        f"  {'the signature inside the service':34s}"
        f"{summary([exchange - without for _, exchange, without, _ in rounds])}, "
        f"{statistics.median(exchange - without - sign for _, exchange, without, sign in rounds):+.0f} µs "
        f"against the loop"
    )
    ratios = [(exchange - sign) / bare for bare, exchange, _, sign in rounds]
    print(
        f"  {'(exchange - signature) / bare':34s}{statistics.median(ratios):6.2f} x   "
        f"({min(ratios):.2f} to {max(ratios):.2f}), run_bench.py's target <= 1.35 is in request rates"
    )
    if trees:
        baseline, *others = trees
        print(f"Each tree against {baseline}, from each round's own figures (tree - {baseline}):")
        for name in others:
            differences = [tree - base for tree, base in zip(figures[name], figures[baseline])]
            percents = [100 * difference / base for difference, base in zip(differences, figures[baseline])]
            print(
                f"  {name:20s}{statistics.median(figures[name]):6.0f} µs   "
                f"{statistics.median(differences):+6.1f} µs ({min(differences):+.1f} to {max(differences):+.1f}), "
                f"{statistics.median(percents):+5.1f} % ({min(percents):+.1f} to {max(percents):+.1f})"
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

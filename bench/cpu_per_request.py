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

    .venv/bin/python bench/cpu_per_request.py               # 7 rounds of 3 s per server
    .venv/bin/python bench/cpu_per_request.py --rounds 3    # a quick look
"""

import argparse
import os
import pathlib
import statistics
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=3, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=10, help="wrk connections")
    args = parser.parse_args()
    print(f"machine: {run_bench.machine_description()}", flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        key_path, signing_key = run_bench.write_signing_key(workdir)
        db_path = pathlib.Path(workdir) / "keys.db"
        store = SQLiteKeyStore(str(db_path))
        warm_key = make_keys(store, 1, 4, "warm")[0]  # bcrypt's lowest cost: only the first exchange checks it
        store.close()
        body = run_bench.exchange_body(warm_key).decode()

        ports = {name: free_port() for name in ("bare", "exchange", "without signature")}
        servers = {
            "bare": start([sys.executable, str(run_bench.BARE_SERVER), str(ports["bare"])]),
            "exchange": start(run_bench.service_command(ports["exchange"], key_path, db_path)),
            "without signature": start(run_bench.service_command(
                ports["without signature"], key_path, db_path,
                program=(str(BENCH / "service_without_signature.py"),))),
        }
        try:
            for name, process in servers.items():
                wait_for_port(ports[name])
                pin(process.pid, {0})
            run_bench.prime_warm_key((ports["exchange"], ports["without signature"]), body)
            figures = {name: [] for name in (*servers, "signature alone")}
            for _ in range(args.rounds):
                for name, process in servers.items():
                    micros = cpu_per_request(process, ports[name], body, args.seconds, args.connections, workdir)
                    if micros is None:
                        sys.exit(f"{name}: some requests failed, its figure would not be a request's")
                    figures[name].append(micros)
                figures["signature alone"].append(1e6 * run_bench.on_server_core(run_bench.signature_seconds,
                                                                                 signing_key))
        finally:
            for process in servers.values():
                process.terminate()
                process.wait(10)

    rounds = list(zip(figures["bare"], figures["exchange"], figures["without signature"], figures["signature alone"]))
    print(f"CPU time per request, median of {args.rounds} rounds (range), wrk -c{args.connections}, "
          f"servers pinned to core 0:")
    for name, values in figures.items():
        print(f"  {name:34s}{summary(values)}")
    print("Each round's own figures:")
    print(f"  {'own work beyond a bare request':34s}"
          f"{summary([without - bare for bare, _, without, _ in rounds])}, "
          f"{statistics.median(without / bare for bare, _, without, _ in rounds):.2f} x bare")
    print(f"  {'the signature inside the service':34s}"
          f"{summary([exchange - without for _, exchange, without, _ in rounds])}, "
          f"{statistics.median(exchange - without - sign for _, exchange, without, sign in rounds):+.0f} µs "
          f"against the loop")
    ratios = [(exchange - sign) / bare for bare, exchange, _, sign in rounds]
    print(f"  {'(exchange - signature) / bare':34s}{statistics.median(ratios):6.2f} x   "
          f"({min(ratios):.2f} to {max(ratios):.2f}), target <= 1.30 in request rates")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""One worker process racing others for a lease (tests/test_catalog_leases.py).

Run as `python lease_worker.py MODE URL RESOURCE LOG [options]`. It opens the catalog and
prints `{"event": "ready"}`; then, by MODE:

- `race`: waits for a line on stdin (the test sends it to every worker at once), then takes
  the lease `--rounds` times, every other round through `Leases.hold`, and for each appends
  one line `pid enter exit` to LOG while it still holds the lease (monotonic times: one clock
  for every process of the machine);
- `hold`: holds the lease through `Leases.hold` (ttl `--ttl`, renewed every `--renew-every`),
  prints `{"event": "held", ...}` and waits to be killed;
- `wait`: waits up to `--wait` seconds for the lease, appends `pid monotonic-now granted` to
  LOG once it has it (`granted` on the lease's own clock), keeps it `--keep` seconds and
  releases it.

The last line it prints is `{"event": "done", ...}`, or `{"event": "crashed", ...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback


def _say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _record(log: str, *values: object) -> None:
    # One write per line on an O_APPEND descriptor: lines of several processes never mix.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(v) for v in values) + "\n").encode())
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("race", "hold", "wait"))
    parser.add_argument("url")
    parser.add_argument("resource")
    parser.add_argument("log")
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--renew-every", type=float, default=None)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--keep", type=float, default=0.005)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--poll", type=float, default=0.02)
    parser.add_argument("--waiter-ttl", type=float, default=1.0)
    args = parser.parse_args(argv)

    from archive_core.catalog import Catalog
    from archive_core.leases import Leases

    catalog = Catalog(args.url)
    leases = Leases(catalog, poll=args.poll, waiter_ttl=args.waiter_ttl)
    leases.current(args.resource)  # connected and warm: the race is between leases
    _say("ready", pid=os.getpid(), holder=str(catalog.worker))
    pid = os.getpid()
    try:
        if args.mode == "race":
            sys.stdin.readline()
            for n in range(args.rounds):
                if n % 2:
                    with leases.hold(args.resource, ttl=args.ttl, wait=args.wait):
                        enter = time.monotonic()
                        time.sleep(args.keep)
                        _record(args.log, pid, enter, time.monotonic())
                else:
                    lease = leases.acquire(args.resource, ttl=args.ttl, wait=args.wait)
                    enter = time.monotonic()
                    time.sleep(args.keep)
                    _record(args.log, pid, enter, time.monotonic())
                    leases.release(lease)
        elif args.mode == "hold":
            with leases.hold(
                args.resource, ttl=args.ttl, wait=args.wait, renew_every=args.renew_every
            ) as held:
                _say("held", token=held.lease.token, expires=held.lease.expires.isoformat())
                while True:
                    time.sleep(1)
        else:
            lease = leases.acquire(args.resource, ttl=args.ttl, wait=args.wait)
            _record(args.log, pid, time.monotonic(), lease.granted.isoformat())
            time.sleep(args.keep)
            leases.release(lease)
    except Exception:
        _say("crashed", traceback=traceback.format_exc())
        return 3
    finally:
        catalog.close()
    _say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

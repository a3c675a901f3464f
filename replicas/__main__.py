"""`python -m replicas SYSTEM`: start the system's replica, run the suite on it, stop.

    python -m replicas agentauri                      # pytest -m daily, report in reports/replicas/
    python -m replicas awe -m "smoke and p0"          # the deploy gate's selection
    python -m replicas agentauri --fault redis-down   # a drill: see which checks it trips
    python -m replicas ava --keep                     # leave it running; prints the variables
    python -m replicas awe -m weekly -- -k tls        # more pytest arguments after --
    python -m replicas --list                         # the systems and their drills
    python -m replicas --drills-doc > docs/drills.md  # the drill table, from the drill definitions

Needs root (a private Docker engine, PostgreSQL as the postgres user) and the packages
`.ci/run` installs. Everything listens on random loopback ports; several replicas run at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from replicas import SYSTEMS, replica_class
from replicas.base import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replicas", description=__doc__.split("\n\n")[0])
    parser.add_argument("system", nargs="?", choices=sorted(SYSTEMS))
    parser.add_argument("-m", dest="marks", default="daily", help='the selection (default daily; "smoke and p0")')
    parser.add_argument("--fault", action="append", default=[], help="inject a drill before the run (repeatable)")
    parser.add_argument("--keep", action="store_true", help="after the run, keep the replica up until Ctrl-C")
    parser.add_argument("--reports-dir", default=str(REPO / "reports" / "replicas"), help="default reports/replicas")
    parser.add_argument("--list", action="store_true", help="the systems and their drills")
    parser.add_argument("--drills-doc", action="store_true", help="print docs/drills.md")
    parser.epilog = "more pytest arguments go after --: python -m replicas awe -m weekly -- -k tls"
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # argparse cannot take them after a positional
    args = parser.parse_args(argv[:cut])
    args.pytest_args = argv[cut + 1 :]

    if args.drills_doc:
        from replicas.docs import drills_markdown

        sys.stdout.write(drills_markdown())
        return 0
    if args.list or not args.system:
        for name in sorted(SYSTEMS):
            cls = replica_class(name)
            print(f"{name}: {cls.title} (inventories/{name}.yml)")
            for d in cls.drills:
                print(f"  --fault {d.name:<28} {d.fault}")
        return 0 if args.list else 4
    if os.geteuid() != 0:
        print("replicas need root (a private Docker engine, PostgreSQL as the postgres user)", file=sys.stderr)
        return 4

    cls = replica_class(args.system)
    unknown = [name for name in args.fault if name not in {d.name for d in cls.drills}]
    if unknown:
        print(f"{args.system} has no drill {', '.join(unknown)} (python -m replicas --list)", file=sys.stderr)
        return 4
    print(f"replica {args.system}: starting ({cls.title}) ...", flush=True)
    with cls() as replica:
        print(f"replica {args.system}: up in {replica.started_s:.1f} s ({replica.dir})", flush=True)
        if replica.overrides:
            print(
                f"  adapted copy of the seed: {replica.inventory()} ({len(replica.overrides)} field(s) no variable"
                " reaches, each with its reason in its header)"
            )
        if args.fault:
            drills = [replica.drill(name) for name in args.fault]
            replica.inject(drills)
            print(f"replica {args.system}: injected {', '.join(args.fault)}", flush=True)
        reports = Path(args.reports_dir)
        command = replica.command("-m", args.marks, *args.pytest_args, reports_dir=reports)
        print("$ " + shlex.join(command), flush=True)
        started = time.monotonic()
        run = replica.run("-m", args.marks, *args.pytest_args, reports_dir=reports, echo=True, timeout=1800)
        print(f"replica {args.system}: pytest -m {args.marks!r} exited {run.rc} in {time.monotonic() - started:.1f} s")
        if run.report():
            print(f"replica {args.system}: report {run.report()}")
        if args.keep:
            print("replica is up; in another shell, as root:")
            for key, value in sorted(replica.env.items()):
                print(f"  export {key}={shlex.quote(value)}")
            print(f"  cd {REPO} && .venv/bin/pytest --inventory={replica.inventory()} -m daily")
            print("Ctrl-C stops it.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    print(f"replica {args.system}: stopped")
    return run.rc


if __name__ == "__main__":
    sys.exit(main())

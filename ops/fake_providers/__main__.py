"""``python -m ops.fake_providers --host 127.0.0.1 --port N [--seed-demo]``."""

import argparse
import sys

from ops.fake_providers.demo import seed_demo
from ops.fake_providers.server import serve
from ops.fake_providers.store import Store


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m ops.fake_providers", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the ready line)")
    parser.add_argument(
        "--seed-demo", action="store_true", help="create the demo accounts (ops/fake_providers/demo.py)"
    )
    parser.add_argument("--page-size", type=int, default=100, help="default page size of new accounts")
    parser.add_argument("--token-lifetime", type=float, default=3600.0, help="access token lifetime, seconds")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every provider call")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    store = Store(
        page_size=args.page_size, token_lifetime=args.token_lifetime, latency=args.latency_ms / 1000
    )
    return serve(
        args.host, args.port, store=store, seed=seed_demo if args.seed_demo else None, verbose=args.verbose
    )


if __name__ == "__main__":
    sys.exit(main())

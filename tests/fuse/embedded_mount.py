"""A mount daemon that also changes IAM records while it serves — as a program that embeds
cartfs and serves the mount and S3 from one open Archive would. The mount itself is the real
one (``cartfs.fuse.mount.serve``, what ``cartfs mount -f`` runs); a control thread applies
the JSON commands it reads on stdin through the Archive's IAM API.

    python tests/fuse/embedded_mount.py ARCHIVE MOUNTPOINT [OPTIONS...]

stdout: ``ready`` once the mount answers, then ``ok`` or ``error MESSAGE`` per command.
Commands: ``{"put_policy": [NAME, DOCUMENT]}``, ``{"attach": [USER, POLICY]}``,
``{"detach": [USER, POLICY]}``; and, to see what a bug in the core does to the mount,
``{"fail": [METHOD]}`` (the archive's METHOD raises a RuntimeError — not a CartError — from
now on) and ``{"heal": [METHOD]}``. Logs (INFO) go to stderr. Unmount with
``fusermount3 -u``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

from cartfs.core.archive import Archive
from cartfs.fuse.mount import serve
from cartfs.fuse.options import parse_options


def reply(line: str) -> None:
    print(line, flush=True)


def _failing(method: str) -> Any:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"injected failure in Archive.{method}")
    return fail


def apply(archive: Archive, command: dict[str, Any]) -> None:
    ((verb, args),) = command.items()
    # IamStore's contract: callers hold the archive lock (the mount's handlers run on
    # another thread and decide under that lock).
    with archive._lock:
        if verb == "put_policy":
            archive.iam.put_policy(args[0], json.dumps(args[1]))
        elif verb == "attach":
            archive.iam.attach(args[0], args[1])
        elif verb == "detach":
            archive.iam.detach(args[0], args[1])
        elif verb == "fail":
            setattr(archive, args[0], _failing(args[0]))
        elif verb == "heal":
            delattr(archive, args[0])
        else:
            raise ValueError(f"unknown command {verb!r}")


def control(archive: Archive) -> None:
    for line in sys.stdin:
        try:
            apply(archive, json.loads(line))
        except Exception as exc:  # reported to the test, which fails on it
            reply(f"error {exc}")
        else:
            reply("ok")


def main() -> int:
    archive_path, mountpoint, *options = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    archive = Archive.open(archive_path)

    def ready(error: str | None) -> None:
        reply("ready" if error is None else f"error {error}")
        if error is None:
            threading.Thread(target=control, args=(archive,), daemon=True).start()

    serve(archive, mountpoint, parse_options(options), ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())

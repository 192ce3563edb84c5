"""Mount options: the ``-o a,b=c`` language of ``cartfs mount``, fstab and ``mount -t``.

One parser serves the CLI and the ``mount.fuse.cartfs`` helper, so an fstab line accepts
exactly what ``cartfs mount -o`` does. Options are of three kinds:

* cartfs settings (``ro``, ``uid=``, ``gid=``, ``cache=``, ``commit=``, ``compress=``, the
  kernel cache knobs ``attr_timeout=``/``entry_timeout=``/``writeback=``, ``key_file=``,
  ``snapdir=hidden|visible``, ``principal=NAME``);
* options handed to the kernel / libfuse unchanged (``allow_other``, ``allow_root``,
  ``nosuid``, ``nodev``, ``noexec``, ``noatime``, ``auto_unmount``...);
* options that mean something to ``mount(8)`` or systemd only (``defaults``, ``noauto``,
  ``nofail``, ``_netdev``, ``x-systemd.*``...), accepted and ignored.

Anything else is a usage error naming the option — pyfuse3 would otherwise fail the mount
with a vague "unknown option" far from the cause.

Defaults are the measured fast-and-safe ones (see benchmarks/README.md, "Mount"): writeback
cache on, 300 s entry/attribute/negative-lookup timeouts (the daemon is the only writer),
readahead raised to 1 MiB, reads and writes on the trio thread (``threads=1`` moves big ones
to worker threads: no gain on 2 cores, since one archive lock serialises them anyway),
extended attributes on (``xattr=0`` trades them for ~4x faster small writes and ``ls -l``).

``principal=`` and not ``user=``: ``user`` is an fstab keyword, and mount(8) itself may hand
a helper ``user=LOGIN`` for user mounts, so ``user=`` stays ignored rather than silently
meaning an IAM identity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from cartfs.core.archive import DEFAULT_CACHE_BYTES, DEFAULT_COMMIT_INTERVAL
from cartfs.core.errors import CartError
from cartfs.core.format import CODEC_BY_NAME


class MountOptionError(CartError):
    """A ``-o`` option is unknown or has a bad value."""

    errno = 22  # EINVAL


PASS_THROUGH = frozenset({
    "allow_other", "allow_root", "auto_unmount", "nosuid", "suid", "nodev", "dev", "noexec",
    "exec", "noatime", "atime", "relatime", "norelatime", "strictatime", "nodiratime",
    "diratime", "sync", "async", "dirsync",
})
"""Options libfuse / the kernel understand themselves."""

IGNORED = frozenset({
    "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "nofail",
    "_netdev", "nonempty", "rw", "loud", "silent",
})
"""Options for mount(8), fstab or systemd; they mean nothing to the daemon."""

IGNORED_PREFIXES = ("x-", "comment=", "fsname=", "subtype=")

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class MountSettings:
    """Everything a mount needs besides the archive and mount point."""

    readonly: bool = False
    uid: int | None = None  # show every file as owned by this uid (like vfat's uid=)
    gid: int | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES
    commit_interval: float = DEFAULT_COMMIT_INTERVAL
    compression: str | None = None  # codec for new files; None = the archive's default
    attr_timeout: float = 300.0
    entry_timeout: float = 300.0
    negative_timeout: float = 300.0
    writeback: bool = True
    threads: bool = False  # measured: a wash for reads, ~20 % slower 1 MiB writes on 2 cores
    xattr: bool = True  # off: ENOSYS, so the kernel skips its getxattr before each write(2)
    read_ahead_kb: int = 1024
    key_file: str | None = None
    snapdir_visible: bool = False  # like ZFS snapdir=hidden: found by name, not listed
    principal: str | None = None  # IAM principal every request is checked for (None: off)
    fuse_options: tuple[str, ...] = field(default=())

    def kernel_options(self, fsname: str) -> set[str]:
        """The option set for ``pyfuse3.init``: the kernel checks permissions
        (``default_permissions``), ``ro`` when read-only, the archive as source."""
        opts = {"default_permissions", f"fsname={escape_option(fsname)}", "subtype=cartfs"}
        opts.update(self.fuse_options)
        if self.readonly:
            opts.add("ro")
        return opts


def escape_option(value: str) -> str:
    """libfuse splits options on commas; a backslash escapes one."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def parse_size(text: str) -> int:
    """'256M', '1GiB', '4096' -> bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise MountOptionError(f"bad size {text!r} (use e.g. 256M or 1G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _number(name: str, text: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise MountOptionError(f"option {name}= needs a number, not {text!r}") from None
    if value < 0:
        raise MountOptionError(f"option {name}= cannot be negative")
    return value


def _flag(name: str, value: str | None) -> bool:
    if value is None or value.lower() in ("1", "yes", "true", "on"):
        return True
    if value.lower() in ("0", "no", "false", "off"):
        return False
    raise MountOptionError(f"option {name}= takes 0 or 1, not {value!r}")


def split_options(groups: Iterable[str]) -> list[str]:
    """['a,b', 'c=d'] -> ['a', 'b', 'c=d'] (backslash-escaped commas stay inside)."""
    out: list[str] = []
    for group in groups:
        out.extend(p.replace("\\,", ",") for p in re.split(r"(?<!\\),", group) if p)
    return out


def parse_options(groups: Iterable[str], base: MountSettings | None = None) -> MountSettings:
    """Fold ``-o`` option groups into settings (later options win)."""
    settings = base or MountSettings()
    fuse = list(settings.fuse_options)
    for option in split_options(groups):
        name, _, value_text = option.partition("=")
        value = value_text if "=" in option else None
        settings, passed = _apply(settings, name.strip(), value)
        if passed and option not in fuse:
            fuse.append(option)
    return replace(settings, fuse_options=tuple(fuse))


def _apply(s: MountSettings, name: str, value: str | None) -> tuple[MountSettings, bool]:
    """One option: (new settings, whether it goes to the kernel as is)."""
    if name == "ro":
        return replace(s, readonly=True), False
    if name in PASS_THROUGH:
        return s, True
    if name in IGNORED or any((name + "=").startswith(p) or name.startswith(p)
                              for p in IGNORED_PREFIXES):
        return s, False
    if name == "default_permissions":
        return s, False  # always on
    if value is None and name not in ("writeback", "nowriteback", "xattr", "noxattr"):
        raise MountOptionError(f"unknown mount option {name!r}"
                               if name not in _VALUED else f"option {name}= needs a value")
    return _apply_valued(s, name, value), False


_VALUED = frozenset({
    "uid", "gid", "cache", "cache_size", "commit", "commit_interval", "compress",
    "compression", "attr_timeout", "entry_timeout", "negative_timeout", "writeback",
    "writeback_cache", "threads", "read_ahead_kb", "key_file", "keyfile", "xattr", "xattrs",
    "snapdir", "principal",
})


def _apply_valued(s: MountSettings, name: str, value: str | None) -> MountSettings:
    text = value or ""
    if name == "uid":
        return replace(s, uid=int(_number(name, text, int)))
    if name == "gid":
        return replace(s, gid=int(_number(name, text, int)))
    if name in ("cache", "cache_size"):
        return replace(s, cache_bytes=parse_size(text))
    if name in ("commit", "commit_interval"):
        interval = _number(name, text, float)
        if interval <= 0:
            raise MountOptionError("commit= must be more than 0 seconds")
        return replace(s, commit_interval=interval)
    if name in ("compress", "compression"):
        if text not in CODEC_BY_NAME:
            raise MountOptionError(
                f"unknown compression {text!r} (choose {', '.join(sorted(CODEC_BY_NAME))})")
        return replace(s, compression=text)
    if name == "attr_timeout":
        return replace(s, attr_timeout=_number(name, text, float))
    if name == "entry_timeout":
        return replace(s, entry_timeout=_number(name, text, float))
    if name == "negative_timeout":
        return replace(s, negative_timeout=_number(name, text, float))
    if name in ("writeback", "writeback_cache"):
        return replace(s, writeback=_flag(name, value))
    if name == "nowriteback":
        return replace(s, writeback=False)
    if name == "noxattr":
        return replace(s, xattr=False)
    if name == "threads":
        return replace(s, threads=_flag(name, value))
    if name in ("xattr", "xattrs"):
        return replace(s, xattr=_flag(name, value))
    if name == "read_ahead_kb":
        return replace(s, read_ahead_kb=int(_number(name, text, int)))
    if name in ("key_file", "keyfile"):
        return replace(s, key_file=text)
    if name == "snapdir":
        if text not in ("hidden", "visible"):
            raise MountOptionError(f"snapdir= takes hidden or visible, not {text!r}")
        return replace(s, snapdir_visible=text == "visible")
    if name == "principal":
        if not text:
            raise MountOptionError("principal= needs an IAM user name")
        return replace(s, principal=text)
    raise MountOptionError(f"unknown mount option {name!r}")

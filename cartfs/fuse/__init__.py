"""The FUSE mount: pyfuse3 request handlers over :class:`cartfs.core.archive.Archive`.

``operations`` maps kernel requests to archive calls (one error boundary), ``inodes`` holds
node ids and lookup-count pins, ``handles`` open files and directories, ``options`` the
``-o`` language, ``mount`` the daemon (readiness, commit timer, signals, unmount).
"""

"""``cartfs passwd``: old passphrase three ways, new one three ways, and the refusals.

Prompts are tested on a real pseudo-terminal (getpass reads /dev/tty, not stdin), so the
interactive path is the one a person at a terminal takes.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.errors import WrongPassphrase
from cartfs.core.format import PAGE_SIZE, decode_superblock
from cartfs.core.keys import KDF_ARGON2ID, KDF_SCRYPT, KdfParams

from .conftest import assert_one_line_error, cartfs_cmd, cartfs_env, run_cartfs

OLD, NEW = "0ld-Secret-1", "N3w-Secret-2"
CHEAP = KdfParams.cheap()


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    path = tmp_path / "sealed.cart"
    with Archive.create(path, passphrase=OLD, kdf=CHEAP) as archive:
        archive.write_file("/docs/a.txt", b"content that must survive", parents=True)
    return path


def key_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    return path


def opens_with(path: Path, passphrase: str) -> bool:
    try:
        with Archive.open(path, passphrase=passphrase, readonly=True) as archive:
            assert archive.read_file("/docs/a.txt") == b"content that must survive"
    except WrongPassphrase:
        return False
    return True


def kdf_of(path: Path) -> int:
    return decode_superblock(path.read_bytes()[:PAGE_SIZE], slot=0).key_header.kdf


def run_on_tty(argv: list[str], answers: list[str], env: dict[str, str],
               timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal, typing one answer
    after each passphrase prompt. Returns (exit code, everything it printed); a child still
    waiting after ``timeout`` is killed (and the test fails on its exit code)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal: it has finished
            break
        if not chunk:
            break
        output += chunk
        while answered < min(output.count(b"assphrase: "), len(answers)):
            os.write(fd, answers[answered].encode() + b"\n")
            answered += 1
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_key_files_both_ways(sealed: Path, tmp_path: Path) -> None:
    result = run_cartfs("passwd", sealed, "--key-file", key_file(tmp_path, "old", OLD),
                        "--new-key-file", key_file(tmp_path, "new", NEW))
    assert result.code == 0, result
    assert "passphrase of" in result.out and "changed" in result.out
    assert opens_with(sealed, NEW) and not opens_with(sealed, OLD)
    assert kdf_of(sealed) == KDF_ARGON2ID  # kept, with its (cheap) cost
    header = decode_superblock(sealed.read_bytes()[:PAGE_SIZE], slot=0).key_header
    assert (header.memory_kib, header.iterations) == (CHEAP.memory_kib, CHEAP.iterations)


def test_environment_both_ways_and_switching_kdf(sealed: Path) -> None:
    env = cartfs_env(CARTFS_PASSPHRASE=OLD, CARTFS_NEW_PASSPHRASE=NEW)
    result = run_cartfs("passwd", sealed, "--kdf", "scrypt", env=env)
    assert result.code == 0, result
    assert opens_with(sealed, NEW) and kdf_of(sealed) == KDF_SCRYPT
    for slot in (0, 1):  # both slots rewritten: neither still holds the old wrapping
        sb = decode_superblock(sealed.read_bytes()[slot * PAGE_SIZE:(slot + 1) * PAGE_SIZE],
                               slot=slot)
        assert sb.key_header.kdf == KDF_SCRYPT


def test_prompts_on_a_terminal(sealed: Path) -> None:
    code, output = run_on_tty(cartfs_cmd("passwd", sealed), [OLD, NEW, NEW], cartfs_env())
    assert code == 0, output
    assert "New passphrase:" in output and "Repeat new passphrase:" in output
    assert OLD not in output and NEW not in output  # nothing echoed back
    assert opens_with(sealed, NEW)


def test_prompt_mismatch_changes_nothing(sealed: Path) -> None:
    code, output = run_on_tty(cartfs_cmd("passwd", sealed), [OLD, NEW, NEW + "x"],
                              cartfs_env())
    assert code == 2 and "do not match" in output and "Traceback" not in output
    assert opens_with(sealed, OLD)


def test_wrong_old_passphrase_stops_before_asking(sealed: Path, tmp_path: Path) -> None:
    code, output = run_on_tty(cartfs_cmd("passwd", sealed), ["not it"], cartfs_env())
    assert code == 1 and "wrong passphrase" in output and "New passphrase" not in output
    result = run_cartfs("passwd", sealed, "--key-file", key_file(tmp_path, "bad", "nope"),
                        "--new-key-file", key_file(tmp_path, "new", NEW))
    assert_one_line_error(result, "wrong passphrase")
    assert opens_with(sealed, OLD)


def test_refusals(sealed: Path, tmp_path: Path) -> None:
    old = key_file(tmp_path, "old", OLD)
    empty = key_file(tmp_path, "empty", "")
    plain = tmp_path / "plain.cart"
    Archive.create(plain).close()
    cases = [
        (["passwd", sealed, "--key-file", old], "--new-key-file"),  # no tty for a prompt
        (["passwd", sealed, "--key-file", old, "--new-key-file", empty], "empty passphrase"),
        (["passwd", sealed, "--key-file", old, "--new-key-file", tmp_path / "nope"], "nope"),
        (["passwd", sealed], "CARTFS_PASSPHRASE"),
        (["passwd", plain, "--new-key-file", old], "not encrypted"),
        (["passwd", tmp_path / "missing.cart", "--new-key-file", old], "missing.cart"),
    ]
    for args, needle in cases:
        assert_one_line_error(run_cartfs(*args), needle)
    assert opens_with(sealed, OLD)


def test_passwd_then_every_way_in(sealed: Path, tmp_path: Path) -> None:
    """After a change, the other commands take the new passphrase the usual ways."""
    new = key_file(tmp_path, "new", NEW)
    assert run_cartfs("passwd", sealed, "--new-key-file", new,
                      env=cartfs_env(CARTFS_PASSPHRASE=OLD)).code == 0
    by_file = run_cartfs("cat", sealed, "/docs/a.txt", "--key-file", new)
    assert by_file.code == 0 and by_file.out == "content that must survive"
    by_env = run_cartfs("fsck", sealed, env=cartfs_env(CARTFS_PASSPHRASE=NEW))
    assert by_env.code == 0 and "OK" in by_env.out
    code, output = run_on_tty(cartfs_cmd("ls", sealed, "/docs"), [NEW], cartfs_env())
    assert code == 0 and "a.txt" in output
    assert_one_line_error(run_cartfs("ls", sealed, env=cartfs_env(CARTFS_PASSPHRASE=OLD)),
                          "wrong passphrase")


def test_a_binary_key_file_is_a_key(tmp_path: Path) -> None:
    """head -c 32 /dev/urandom > key: all 32 bytes are the passphrase, newlines included."""
    key = tmp_path / "key.bin"
    key.write_bytes(b"\xff\n" + os.urandom(30))
    path = tmp_path / "bin.cart"
    assert run_cartfs("create", "--encrypt", "--key-file", key, path).code == 0
    assert run_cartfs("mkdir", path, "/d", "--key-file", key).code == 0
    listed = run_cartfs("ls", path, "/", "--key-file", key)
    assert listed.code == 0 and listed.out.split() == ["d"], listed
    with Archive.open(path, readonly=True, passphrase=key.read_bytes()) as archive:
        assert archive.listdir("/") == ["d"]
    cut = tmp_path / "first-line"
    cut.write_bytes(b"\xff\n")  # the first "line" alone is not the key
    assert_one_line_error(run_cartfs("ls", path, "--key-file", cut), "passphrase")
    new_key = tmp_path / "new.bin"
    new_key.write_bytes(os.urandom(32))
    result = run_cartfs("passwd", path, "--key-file", key, "--new-key-file", new_key)
    assert result.code == 0, result.err
    assert run_cartfs("ls", path, "--key-file", new_key).code == 0


def test_ctrl_d_at_a_prompt_is_a_clear_refusal(sealed: Path, tmp_path: Path) -> None:
    for argv in (["ls", sealed], ["create", "--encrypt", tmp_path / "new.cart"],
                 ["passwd", sealed]):
        answers = [OLD, "\x04"] if argv[0] == "passwd" else ["\x04"]
        code, output = run_on_tty(cartfs_cmd(*argv), answers, cartfs_env())
        assert code == 2, (argv, output)
        assert "no " in output and "passphrase given" in output, output
        assert "Traceback" not in output, output
    assert opens_with(sealed, OLD)
    assert not (tmp_path / "new.cart").exists()

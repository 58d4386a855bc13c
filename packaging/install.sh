#!/usr/bin/env bash
# Install OLOL on one host: the program, systemd units, config, a system user.
# Running it again is harmless (existing config is kept); --uninstall undoes it.
#
# The program is the unpacked (standalone) build, dist/olol.dist/, installed as PREFIX/lib/olol/
# with PREFIX/bin/olol a symlink to its executable: nothing unpacks itself at start. --binary
# installs the one-file executable as PREFIX/bin/olol instead (it unpacks on its first start).
#
#   sudo packaging/install.sh                          # program + units + /etc/olol + user
#   sudo packaging/install.sh --enable server          # ... and start olol-server now
#   sudo packaging/install.sh --uninstall [--purge]    # remove (--purge: config, data, user too)
#   packaging/install.sh --prefix /usr --destdir DIR --files-only   # stage files (package builds)
#
# Options:
#   --standalone DIR   the unpacked build (its program is DIR/olol.bin); default: dist/olol.dist of
#                      this checkout, else ./olol.dist, else the one file below
#   --binary FILE      the one-file executable instead (default: dist/olol, else ./olol)
#   --prefix DIR       program in DIR/lib/olol + DIR/bin/olol, units in DIR/lib/systemd/system
#                      (default /usr/local)
#   --sysconfdir DIR   config in DIR/olol (default /etc)
#   --destdir DIR      install under DIR (implies --files-only)
#   --files-only       lay out files only: no user, no ownership changes, no systemctl
#   --enable LIST      comma-separated modes to enable and start: proxy,server,rpc-server
#   --uninstall        stop and remove the units and the binary; keep config, data and user
#   --purge            with --uninstall: also remove config, data, cache and the olol user
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMMON="$HERE/common"
MODES=(proxy server rpc-server)
USER_NAME=olol

binary=""
standalone=""
prefix=/usr/local
sysconfdir=/etc
destdir=""
files_only=0
enable=""
action=install
purge=0

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'install.sh: %s\n' "$*"; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --binary) binary="${2:?}"; shift ;;
    --standalone) standalone="${2:?}"; shift ;;
    --prefix) prefix="${2:?}"; shift ;;
    --sysconfdir) sysconfdir="${2:?}"; shift ;;
    --destdir) destdir="${2:?}"; files_only=1; shift ;;
    --files-only) files_only=1 ;;
    --enable) enable="${2:?}"; shift ;;
    --uninstall) action=uninstall ;;
    --purge) purge=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ $purge -eq 0 || $action == uninstall ]] || die "--purge goes with --uninstall"
[[ -z "$binary" || -z "$standalone" ]] || die "--binary and --standalone exclude each other"

bindir="$prefix/bin"
programdir="$prefix/lib/olol"
unitdir="$prefix/lib/systemd/system"
sysusersdir="$prefix/lib/sysusers.d"
tmpfilesdir="$prefix/lib/tmpfiles.d"
confdir="$sysconfdir/olol"
D="${destdir%/}"

systemd_running() { ((files_only == 0)) && [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; }

units() { local m; for m in "${MODES[@]}"; do printf 'olol-%s.service\n' "$m"; done; }

validate_enable() {
  local mode
  IFS=, read -r -a wanted <<<"$enable"
  for mode in "${wanted[@]}"; do
    [[ " ${MODES[*]} " == *" $mode "* ]] || die "--enable: unknown mode '$mode' (one of ${MODES[*]})"
  done
}

render_unit() {  # template -> unit with this install's paths
  sed -e "s|@BINDIR@|$bindir|g" -e "s|@SYSCONFDIR@|$sysconfdir|g" "$1"
}

install_file() {  # mode src dst: write only when the content differs
  local mode="$1" src="$2" dst="$3"
  if [[ -f "$dst" ]] && cmp -s "$src" "$dst"; then
    chmod "$mode" "$dst"
    return
  fi
  install -D -m "$mode" "$src" "$dst.olol-new"
  mv -f "$dst.olol-new" "$dst"
}

install_program_dir() {  # src dst: replace dst by a copy of src unless they are equal already
  local src="$1" dst="$2"
  if [[ -d "$dst" && ! -L "$dst" ]] && diff -rq --no-dereference "$src" "$dst" >/dev/null 2>&1; then
    return
  fi
  rm -rf "$dst.olol-new" "$dst.olol-old"
  mkdir -p "$(dirname "$dst")"
  cp -R --no-preserve=ownership,timestamps "$src" "$dst.olol-new"
  # Readable by all; executables (the program, libraries marked so) keep their x bits.
  chmod -R u+rwX,go+rX,go-w "$dst.olol-new"
  # Swapped by rename: a running program keeps the files it has open (the old inodes).
  if [[ -e "$dst" || -L "$dst" ]]; then
    mv "$dst" "$dst.olol-old"
  fi
  mv "$dst.olol-new" "$dst"
  rm -rf "$dst.olol-old"
}

find_program() {  # the default program: the standalone build first, else the one file
  local candidate
  for candidate in "$HERE/../dist/olol.dist" "$PWD/olol.dist"; do
    [[ -x "$candidate/olol.bin" ]] && { standalone="$candidate"; return 0; }
  done
  for candidate in "$HERE/../dist/olol" "$PWD/olol"; do
    [[ -f "$candidate" && -x "$candidate" ]] && { binary="$candidate"; return 0; }
  done
  return 0
}

ensure_user() {
  if getent passwd "$USER_NAME" >/dev/null; then
    return
  fi
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$D$sysusersdir/olol.conf"
  else
    useradd --system --user-group --home-dir /var/lib/olol --no-create-home \
      --shell /usr/sbin/nologin --comment "OLOL LLM cluster" "$USER_NAME"
  fi
  say "created system user $USER_NAME"
}

do_install() {
  [[ -n "$enable" ]] && validate_enable
  [[ -n "$binary" || -n "$standalone" ]] || find_program
  if [[ -n "$standalone" ]]; then
    [[ -d "$standalone" && -x "$standalone/olol.bin" ]] || die "no olol program at $standalone/olol.bin (packaging/build-binary)"
  else
    [[ -n "$binary" && -f "$binary" && -x "$binary" ]] ||
      die "no olol binary: build it (packaging/build-binary) or pass --standalone DIR or --binary FILE"
  fi
  ((files_only)) || [[ $EUID -eq 0 ]] || die "run as root (or use --destdir/--files-only)"

  local tmp unit mode
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: $tmp is local
  trap "rm -rf '$tmp'" EXIT
  if [[ -n "$standalone" ]]; then
    install_program_dir "$standalone" "$D$programdir"
    # Relative, so the link holds inside a package root (DESTDIR) as on the host.
    mkdir -p "$D$bindir"
    if [[ "$(readlink "$D$bindir/olol" 2>/dev/null)" != ../lib/olol/olol.bin ]]; then
      ln -sfn ../lib/olol/olol.bin "$D$bindir/olol"
    fi
  else
    rm -rf "$D$programdir"
    install_file 0755 "$binary" "$D$bindir/olol"
  fi
  while read -r unit; do
    render_unit "$COMMON/systemd/$unit.in" >"$tmp/$unit"
    install_file 0644 "$tmp/$unit" "$D$unitdir/$unit"
  done < <(units)
  install_file 0644 "$COMMON/sysusers-olol.conf" "$D$sysusersdir/olol.conf"
  install_file 0644 "$COMMON/tmpfiles-olol.conf" "$D$tmpfilesdir/olol.conf"

  ((files_only)) || ensure_user
  install -d -m 0750 "$D$confdir"
  ((files_only)) || chown "root:$USER_NAME" "$D$confdir"
  for mode in "${MODES[@]}"; do
    local conf="$D$confdir/$mode.toml"
    if [[ -e "$conf" ]] && ! cmp -s "$COMMON/config/$mode.toml" "$conf"; then
      say "kept your $confdir/$mode.toml (the shipped defaults are in $COMMON/config/)"
      continue
    fi
    if ((files_only)); then
      # Packages own no olol group at build time: their postinst makes the folder 0750 root:olol.
      install -m 0644 "$COMMON/config/$mode.toml" "$conf"
    else
      install -m 0640 -g "$USER_NAME" "$COMMON/config/$mode.toml" "$conf"
    fi
  done

  if systemd_running; then
    systemctl daemon-reload
    if [[ -n "$enable" ]]; then
      IFS=, read -r -a wanted <<<"$enable"
      for mode in "${wanted[@]}"; do
        systemctl enable --now "olol-$mode.service"
        say "started olol-$mode (journalctl -u olol-$mode)"
      done
    fi
  elif [[ -n "$enable" ]]; then
    say "systemd is not running here: not starting ${enable}"
  fi
  if ((files_only)); then
    say "laid out OLOL under ${D:-/} (prefix $prefix)"
  else
    say "installed $("$bindir/olol" version 2>/dev/null | head -n1 || echo olol) as $bindir/olol"
    say "edit $confdir/MODE.toml, then: systemctl enable --now olol-MODE (MODE: ${MODES[*]})"
  fi
}

do_uninstall() {
  ((files_only)) || [[ $EUID -eq 0 ]] || die "run as root (or use --destdir/--files-only)"
  local unit
  if systemd_running; then
    while read -r unit; do
      systemctl disable --now "$unit" 2>/dev/null || true
    done < <(units)
  fi
  while read -r unit; do
    rm -f "$D$unitdir/$unit"
  done < <(units)
  rm -f "$D$bindir/olol" "$D$sysusersdir/olol.conf" "$D$tmpfilesdir/olol.conf"
  rm -rf "$D$programdir"
  systemd_running && systemctl daemon-reload
  if ((purge)); then
    rm -rf "$D$confdir" "$D/var/lib/olol" "$D/var/cache/olol"
    if ((files_only == 0)) && getent passwd "$USER_NAME" >/dev/null; then
      userdel "$USER_NAME"
      say "removed system user $USER_NAME"
    fi
    say "purged OLOL (program, units, config, data, cache)"
  else
    say "removed the program and units; kept $confdir, /var/lib/olol and user $USER_NAME (--purge removes them)"
  fi
}

"do_$action"

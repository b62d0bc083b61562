#!/usr/bin/env bash
# The layers of src/ (README "Architecture"): core is pure (libc and jansson); io may use core;
# worker and cli may use io and core; main.c may use everything. A quoted include must name a
# header of the file's own layer or of one below it, and core may include no system header
# outside the C library and jansson. Prints every violation as file:line and exits 1 on any.
set -u
SRC=${1:-$(dirname "$0")/../src}
cd "$SRC" || exit 2
allowed() { # layer -> the folders its quoted includes may come from
  case $1 in
    core) echo "core" ;;
    io) echo "io core" ;;
    worker) echo "worker io core" ;;
    cli) echo "cli io core" ;;
  esac
}
LIBC='assert|ctype|errno|float|inttypes|limits|math|stdarg|stdbool|stddef|stdint|stdio|stdlib|string|strings|jansson'
bad=0
for layer in core io worker cli; do
  for f in "$layer"/*.[ch]; do
    [ -e "$f" ] || continue
    while IFS=: read -r line text; do
      h=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' <<<"$text")
      ok=0
      for dir in $(allowed "$layer"); do
        [ -e "$dir/$h" ] && ok=1
      done
      if [ $ok = 0 ]; then
        echo "$f:$line: includes \"$h\", which is not in $(allowed "$layer" | sed 's/ /, /g')" >&2
        bad=1
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
    if [ "$layer" = core ]; then
      while IFS=: read -r line text; do
        echo "$f:$line: the pure core includes a system header outside libc and jansson: $text" >&2
        bad=1
      done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<' "$f" | grep -vE "<($LIBC)\.h>")
    fi
  done
done
[ $bad = 0 ] && echo "layers ok: core <- io <- worker, cli"
exit $bad

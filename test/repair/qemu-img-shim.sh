#!/bin/sh
# Fault injection for the tool-kill tests, put first on PATH as `qemu-img`. Every invocation that
# writes an image (bitmap, check, rebase) is counted in $SHIM_COUNT; the $SHIM_NTH of them is
# SIGKILLed: `before` it runs, `after` the real one finished, or `mid` at its $SHIM_WRITE-th write
# (strace injects SIGKILL at that pwrite; strace then dies of the same signal). Every other
# invocation runs the real qemu-img ($SHIM_REAL) unchanged.
case "$1" in
  bitmap|check|rebase) ;;
  *) exec "$SHIM_REAL" "$@" ;;
esac
n=$(($(cat "$SHIM_COUNT" 2>/dev/null || echo 0) + 1))
echo "$n" > "$SHIM_COUNT"
[ "$n" = "$SHIM_NTH" ] || exec "$SHIM_REAL" "$@"
echo "$*" > "$SHIM_COUNT.killed"
case "$SHIM_MODE" in
  before) kill -9 $$ ;;
  after) "$SHIM_REAL" "$@"; kill -9 $$ ;;
  # strace counts each thread's writes apart, and qemu-img spreads its writes over a pool of worker
  # threads whose share varies with the load: one worker (QEMU's main-loop object) makes "the Nth
  # write" the same one on every run
  mid) sub=$1; shift
       exec strace -f -qq -o /dev/null -e trace=pwrite64,pwritev,pwritev2 -e inject=pwrite64,pwritev,pwritev2:signal=SIGKILL:when="$SHIM_WRITE" \
         "$SHIM_REAL" "$sub" --object main-loop,id=strata-shim-loop,thread-pool-min=1,thread-pool-max=1 "$@" ;;
esac
echo "qemu-img shim: unknown SHIM_MODE '$SHIM_MODE'" >&2
exit 3

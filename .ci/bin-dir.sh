# Sourced by the .ci scripts (from the repository root): BIN_DIR is where cargo puts the
# debug binaries, honouring CARGO_TARGET_DIR (absolute or relative to the root).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
BIN_DIR="$target_dir/debug"

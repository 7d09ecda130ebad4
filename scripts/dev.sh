#!/usr/bin/env bash
# One entry for a fresh Debian 12 machine, as root:
#   bash scripts/dev.sh demo   build rcni and run the demo on its embedded config
#   bash scripts/dev.sh test   install test dependencies and run the whole suite
#   bash scripts/dev.sh build  the static release binary
#   bash scripts/dev.sh bench  rcni vs the reference plugins, side by side
#   bash scripts/dev.sh setup  only install what is needed
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2: tests cross-check kernel state with `ip -j`; nftables/iptables:
# tests read rule sets; containernetworking-plugins: the reference plugins the
# interop tests and the benchmark compare against.
APT_PACKAGES=(iproute2 iputils-ping nftables iptables containernetworking-plugins
  ca-certificates curl gcc libc6-dev)

setup() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      # Debian 12's own rustc is too old for this workspace.
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "rcni needs root: it creates network namespaces and links" >&2
    exit 1
  fi
}

# Release builds link statically (glibc's static flavour): a plugin then
# starts ~0.3 ms faster and maps no shared libraries. The explicit --target
# keeps the flag off build scripts and proc-macros.
release_build() {
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$host" "$@"
  RELEASE_DIR="target/$host/release"
}

case "${1:-}" in
  setup)
    setup
    ;;
  build)
    setup
    release_build --bin rcni
    echo "built $RELEASE_DIR/rcni (install it with: $RELEASE_DIR/rcni install --bin-dir /opt/cni/bin)"
    ;;
  demo)
    setup
    release_build --bin rcni
    "$RELEASE_DIR/rcni" demo
    ;;
  test)
    setup
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo build -p rcni -p rcni-bench
    cargo test --workspace --all-targets
    cargo test --workspace --doc
    # Keep the benchmark tool working (never a pass/fail on time).
    ./target/debug/rcni-bench --quick --only start,bridge,host-local,kernel,rss
    ;;
  bench)
    # Side-by-side with the reference plugins; writes BENCHMARKS.md,
    # benchmarks.json and benchmarks.svg at the repository root.
    setup
    release_build -p rcni -p rcni-bench
    shift
    "$RELEASE_DIR/rcni-bench" --json benchmarks.json --svg benchmarks.svg \
      --markdown BENCHMARKS.md "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test|build|bench|setup" >&2
    exit 2
    ;;
esac

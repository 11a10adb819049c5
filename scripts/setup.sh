# Sourced by scripts/test.sh and scripts/demo.sh: installs what the workspace
# needs on a fresh Debian 12 machine. Idempotent and quick when all is there.

apt_packages=(busybox-static runc crun umoci skopeo podman conmon containerd python3-venv python3-pip iproute2 pkg-config qemu-system-x86 apparmor cpio gcc libc6-dev time docker-registry pigz apache2-utils containernetworking-plugins golang-go golang-github-docker-spdystream-dev)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (1.88 or newer) with rustup" >&2
  exit 1
fi

# Python test tools (a grpcio client for the CRI interop test) live in .venv.
if ! .venv/bin/python -c 'import grpc, grpc_tools, websocket' >/dev/null 2>&1; then
  echo "creating .venv with grpcio and websocket-client"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check grpcio grpcio-tools websocket-client
fi

# npm's spdy-transport (an independent SPDY/3.1 implementation) and
# websocket-driver (WebSocket, for SPDY tunnelled in it) for the CRI streaming
# tests live in .node.
if ! [ -d .node/node_modules/spdy-transport ] || ! [ -d .node/node_modules/websocket-driver ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    else
      echo "npm not found (run as root, or install it)" >&2
      exit 1
    fi
  fi
  echo "installing spdy-transport and websocket-driver into .node"
  npm install --silent --prefix .node --no-save --no-package-lock spdy-transport websocket-driver >/dev/null
fi

# cargo-fuzz (from crates.io) for the fuzz targets in fuzz/.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked --quiet --version 0.13.2 cargo-fuzz
fi

#!/usr/bin/env bash
# Installs the Debian 12 packages fulgur needs to build, run and test.
# Idempotent: only packages that are missing are installed, so a second run
# on a ready machine does nothing and needs no network.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libtorch-dev libgloo-dev
  # Without OpenBLAS libtorch falls back to the reference BLAS (~20x slower).
  libopenblas0-pthread libopenblas-dev
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  libuv1-dev libyaml-dev libsqlite3-dev zlib1g-dev
  # CRC32C (crc32_iscsi) for TensorBoard's record framing.
  libisal-dev
  libcriterion-dev
  # TLS tests make a self-signed certificate.
  openssl
  dataset-fashion-mnist
  # Interop tests and the Python baseline of the benchmarks.
  python3 python3-torch python3-grpcio python3-grpc-tools python3-yaml python3-numpy
  # The TensorBoardLogger test decodes event files and checks their CRC32C.
  python3-protobuf python3-crc32c
  # The metrics interop test checks TorchMetrics semantics against scikit-learn.
  python3-sklearn
  # torchvision models (resnet18, mobilenet_v3_small) in the parity tests.
  python3-torchvision
  # test_trainer_debug counts the data files a run opens (reload_dataloaders_every_n_epochs).
  strace
  # test_daemon_full_disk mounts small tmpfs filesystems (slim container
  # images may lack mount).
  mount
  # make fuzz and the fuzz/smoke test: clang with libFuzzer and the
  # sanitizer runtimes (tests/fuzz).
  clang-14 libclang-rt-14-dev libfuzzer-14-dev
  # fulgurd --http: the HTTP server (with GnuTLS for --tls-cert) and the JSON
  # parser of REST bodies (jansson: its errors carry line and column).
  libmicrohttpd-dev libjansson-dev
  # The dashboard's charts, served by fulgurd at /assets/chart.js.
  libjs-chart.js
  # The HTTP interop test scrapes /metrics with a real Prometheus server.
  prometheus
  # The dashboard's test: headless Chromium driven through chromedriver by
  # Selenium.
  chromium chromium-driver python3-selenium
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

#!/bin/sh
# Debian packages some tests need: OpenSSH (device_bench's ssh test starts a local sshd), Fashion-MNIST, and the
# DejaVu fonts the OCR test models' text crops are printed with.
# Idempotent: installs only what is missing, and only when running as root with apt-get; otherwise says what to do.
set -eu

PACKAGES="openssh-server openssh-client dataset-fashion-mnist fonts-dejavu-core"
missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "install-test-deps: already installed:$(printf ' %s' $PACKAGES)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get not found; install by hand:$missing (the tests that need them will skip)"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-test-deps: not root; run: sudo apt-get install -y$missing (the tests that need them will skip)"
    exit 0
fi
echo "install-test-deps: apt-get install -y$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing

# Make Debian's Chromium available at /usr/bin/chromium for the browser tests.
#
# Source this file (". .ci/chromium.sh") as root on Debian 12. It installs the
# chromium package with apt-get only when /usr/bin/chromium is missing, so
# sourcing it again does nothing. Playwright drives this binary; no browser
# build is downloaded. It changes no shell options of the caller and returns
# non-zero on failure without exiting the caller's shell.

fed_chromium_setup() {
    if [ -x /usr/bin/chromium ]; then
        return 0
    fi
    echo "chromium.sh: installing chromium with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 ||
        { echo "chromium.sh: apt-get install chromium failed" >&2; return 1; }
    [ -x /usr/bin/chromium ] || { echo "chromium.sh: /usr/bin/chromium missing after install" >&2; return 1; }
    echo "chromium.sh: $(/usr/bin/chromium --version 2>/dev/null)" >&2
}

fed_chromium_setup

# Sourced by scripts/test: the Debian packages some tests drive for real
# (a Redis server, headless Chromium and its driver), installed when missing.
# Without root or apt-get it says what is missing; those tests then skip,
# except in CI (CI=true), where they fail.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "not installed: ${missing[*]}; the tests that need them will skip" >&2
    fi
fi

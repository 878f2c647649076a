#!/bin/sh
# Builds the sipsentry .deb and .rpm with nfpm, in one command:
#
#   ./packaging/build.sh            # packages in dist/
#   OUT=/tmp/pkgs ./packaging/build.sh
#
# Needs Go and network access the first time (nfpm is fetched and built by
# `go run ...@version`; later runs use the module and build caches).
# VERSION defaults to the git description (v1.2.3 -> 1.2.3).
set -eu
cd "$(dirname "$0")/.."

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
OUT=${OUT:-dist}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || true)
	case "$VERSION" in
	v[0-9]*) VERSION=${VERSION#v} ;;
	"") VERSION=0.0.0 ;;
	*) VERSION=0.0.0+git.$VERSION ;;
	esac
	# No hyphen: a hyphen would make dpkg read a Debian revision into it.
	VERSION=$(echo "$VERSION" | sed 's/-/+/; s/-/./g')
fi
export VERSION
ARCH=${ARCH:-$(go env GOARCH)}
export ARCH

root=packaging/root
rm -rf "$root"
mkdir -p "$root/man8" "$OUT"

echo "packaging: building sipsentry $VERSION for linux/$ARCH" >&2
# CGO off: one static binary that runs on any glibc or musl system.
CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
	-o "$root/sipsentry" ./cmd/sipsentry

# Man pages and completions come from the command tree, by a build of it
# with the man page generator (-tags mangen: cobra/doc and blackfriday stay
# out of the packaged daemon), for the host's arch, with the same version.
gendir=$(mktemp -d)
trap 'rm -rf "$gendir"' EXIT
gen="$gendir/sipsentry-mangen"
CGO_ENABLED=0 go build -tags mangen -trimpath -ldflags "-X main.version=$VERSION" -o "$gen" ./cmd/sipsentry
"$gen" man --dir "$root/man8" >/dev/null
gzip -9n "$root"/man8/*.8
"$gen" completion bash >"$root/sipsentry.bash"
"$gen" completion zsh >"$root/_sipsentry"

# The packaged binary lives in /usr/bin, not /usr/local/bin.
sed 's#/usr/local/bin/sipsentry#/usr/bin/sipsentry#g' contrib/sipsentry.service >"$root/sipsentry.service"

# A native package's changelog: this build, from git.
{
	echo "sipsentry ($VERSION) unstable; urgency=medium"
	echo
	echo "  * Built from $(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree without git')."
	echo
	echo " -- sipsentry maintainers <sipsentry@users.noreply.github.com>  $(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$root/changelog.gz"

# nfpm takes a list of files; the man pages are globbed by nfpm itself.
echo "packaging: nfpm ($NFPM)" >&2
for p in deb rpm; do
	go run "$NFPM" package --config packaging/nfpm.yaml --packager "$p" --target "$OUT/"
done
ls -l "$OUT"/sipsentry*"$(echo "$VERSION" | cut -c1-5)"* >&2 || true

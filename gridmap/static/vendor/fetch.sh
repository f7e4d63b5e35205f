#!/usr/bin/env bash
# Re-create the vendored map scripts and styles from the npm registry, pinned (see README.md).
# Usage: gridmap/static/vendor/fetch.sh   (needs npm and tar; writes next to this script)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name@version  files to keep (paths inside the package, relative to package/)
fetch() {
  local spec="$1" dest="$2"; shift 2
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  local tgz; tgz="$(ls -t "$work"/*.tgz | head -1)"
  mkdir -p "$work/x" "$here/$dest"
  tar -xzf "$tgz" -C "$work/x"
  for f in "$@"; do
    mkdir -p "$here/$dest/$(dirname "$f")"
    cp "$work/x/package/$f" "$here/$dest/$f"
  done
  find "$work/x/package" -maxdepth 1 -iname "*licen[cs]e*" -exec cp {} "$here/$dest/" \;
  rm -rf "$work/x" "$tgz"
}

fetch leaflet@1.9.4 leaflet \
  dist/leaflet.js dist/leaflet.css \
  dist/images/layers.png dist/images/layers-2x.png \
  dist/images/marker-icon.png dist/images/marker-icon-2x.png dist/images/marker-shadow.png
fetch jquery@3.7.1 jquery dist/jquery.min.js
fetch leaflet.markercluster@1.5.3 leaflet.markercluster \
  dist/leaflet.markercluster.js dist/MarkerCluster.css dist/MarkerCluster.Default.css
fetch leaflet.heat@0.2.0 leaflet.heat dist/leaflet-heat.js
fetch leaflet-search@2.9.7 leaflet-search \
  dist/leaflet-search.min.js dist/leaflet-search.min.css \
  images/search-icon.png images/search-icon-mobile.png images/loader.gif
fetch @geoman-io/leaflet-geoman-free@2.20.2 leaflet-geoman \
  dist/leaflet-geoman.js dist/leaflet-geoman.css
echo "vendored into $here"

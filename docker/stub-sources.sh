#!/bin/sh
# Empty sources for every target the workspace's manifests name, so the
# Dockerfile can compile all dependencies in a layer of their own, before
# the real sources arrive: a source change then rebuilds only Bridle's
# crates. Run in the build stage's /src with only the manifests present.
# (Build scripts are absent here, so none runs; they run in the real build.)
set -eu
# The workspace's members: the quoted names between `members = [` and `]`.
members=". $(awk '/^members *=/ { on = 1 } on { print; if (/]/) exit }' Cargo.toml | grep -o '"[^"]*"' | tr -d '"' | grep -vx '\.' || true)"
for dir in $members; do
    mkdir -p "$dir/src"
    [ "$dir" = . ] || : >"$dir/src/lib.rs"
    # [[bin]], [[bench]], [[test]], [[example]]: `path`, else the default place.
    awk -v dir="$dir" '
        function flush() {
            if (kind != "" && name != "") {
                if (path == "") path = (kind == "bin" ? "src/bin/" : kind == "bench" ? "benches/" : kind "s/") name ".rs"
                print dir "/" path
            }
            kind = ""; name = ""; path = ""
        }
        /^\[/ { flush() }
        /^\[\[(bin|bench|test|example)\]\]/ { kind = $0; gsub(/[\[\]]/, "", kind); next }
        kind != "" && /^name *=/ { split($0, a, "\""); name = a[2] }
        kind != "" && /^path *=/ { split($0, a, "\""); path = a[2] }
        END { flush() }
    ' "$dir/Cargo.toml" | while read -r file; do
        mkdir -p "$(dirname "$file")"
        echo 'fn main() {}' >"$file"
    done
done

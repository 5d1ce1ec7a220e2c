# shellcheck shell=bash
# Sourced by scripts/kernel-matrix: the legacy-profile kernel's cells. The kernel is built from
# Debian's linux-source-6.1 by legacy-kernel.sh (cached under $CACHE/kernels) and boots like
# the downloaded ones. Its configs: KM_LEGACY_CONFIGS (default "default,floor"); selected
# like the others with --kernels legacy-6.1. Uses the matrix's globals (WANT_KERNELS, CACHE,
# D, expected, sources, cells, skipped).
LEGACY_ID=legacy-6.1
LEGACY_CONFIGS="${KM_LEGACY_CONFIGS:-default,floor}"

add_legacy_cells() {
  if [ -n "$WANT_KERNELS" ] && ! [[ ",$WANT_KERNELS," == *",$LEGACY_ID,"* ]]; then return 0; fi
  local n img c t
  n=$(tr ',' '\n' <<<"$LEGACY_CONFIGS" | grep -c .)
  expected=$((expected + n))
  t=$SECONDS
  say "$LEGACY_ID: building (or reusing) the legacy-profile kernel"
  if img="$(nice -n 15 "$D/legacy-kernel.sh" "$CACHE")"; then
    sources+=("$(printf '%-11s %s (built from linux-source-6.1 %s, %ss)' "$LEGACY_ID" "$(basename "$(dirname "$img")")" \
      "$(dpkg-query -W -f '${Version}' linux-source-6.1)" "$((SECONDS - t))")")
    for c in ${LEGACY_CONFIGS//,/ }; do cells+=("$LEGACY_ID|$img|$c"); done
  else
    say "$LEGACY_ID: the legacy-profile kernel could not be built"
    skipped+=("$LEGACY_ID")
  fi
}

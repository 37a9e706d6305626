#!/usr/bin/env bash
# Fails, naming the files, when any C++ source differs from what .clang-format asks for.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- \
    '*.cpp' '*.hpp' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
unformatted=()
for file in "${sources[@]}"; do
    if ! clang-format --dry-run -Werror "$file" >/dev/null 2>&1; then
        unformatted+=("$file")
    fi
done

if [ "${#unformatted[@]}" -ne 0 ]; then
    echo "check-format: these files differ from .clang-format (run clang-format -i on them):" >&2
    printf '  %s\n' "${unformatted[@]}" >&2
    exit 1
fi
echo "check-format: ${#sources[@]} files formatted"

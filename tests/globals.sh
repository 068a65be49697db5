#!/usr/bin/env bash
# globals.sh [BUILD] - the library keeps no writable global state (STYLE.md:
# "No mutable globals"): lists every data object of BUILD/liblstm.a's objects
# that lives in a writable section and fails for each one not in the allow
# list below. Ends with "N passed, N failed" like every test program.
#
# Writable sections: .data, .bss and their subsections (.data.rel,
# .data.rel.local, -fdata-sections' .data.NAME), thread-local .tdata/.tbss,
# and common symbols. Not .rodata nor .data.rel.ro(.local): with -fPIC a
# table of pointers such as `static const char *const tbl[]` is placed in
# .data.rel.ro, which the dynamic linker makes read-only after relocation
# (RELRO), so nm's letters (d/D for both) cannot tell the two apart.
#
# The check reads the objects as compiled: at -O2 GCC may itself move a
# static table that nothing writes into .data.rel.ro, so the sanitizer
# build (which keeps every global where its declaration puts it) is checked
# too; tests/run.sh runs this for each build directory it is given.
set -u -o pipefail
build=${1:-build}
lib=$build/liblstm.a

# The allow list: "OBJECT SYMBOL-PATTERN  reason" (a bash pattern on the
# symbol; OBJECT is the archive member, or * for any). Every entry says why
# the symbol is not mutable state of the library.
allowed=(
    '* __odr_asan.*  AddressSanitizer one-byte ODR indicator beside each global with external linkage (the table itself is const); only in the sanitizer build'
    '* __unnamed_[0-9]*  clang'"'"'s UndefinedBehaviorSanitizer data (source locations, which it marks as reported, and type descriptors); only in a clang sanitizer build'
)

pass=0 fail=0
if [[ ! -f $lib ]]; then
    echo "FAIL $lib: not built"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! command -v objdump >/dev/null 2>&1; then
    echo "FAIL objdump not found (Debian: binutils)"
    echo "0 passed, 1 failed"
    exit 1
fi

# The source file an archive member was compiled from (kernels_<file>_<isa>.o
# is src/core/kernels_<file>.c compiled for one instruction set).
source_of() {
    local base=${1%.o} f
    case $base in
    kernels_f32_* | kernels_bf16_*) base=${base%_*} ;;
    kernels_int8_*) base=kernels_int8 ;; # its ISA names have underscores (avxvnni_evex)
    esac
    for f in src/*/"$base".c; do
        [[ -f $f ]] && { echo "$f"; return; }
    done
    echo "src/?/$base.c"
}

is_allowed() { # object symbol
    local entry obj pat
    for entry in "${allowed[@]}"; do
        read -r obj pat _ <<<"$entry"
        # shellcheck disable=SC2053 # the patterns are meant to match
        if [[ ($obj == '*' || $obj == "$1") && $2 == $pat ]]; then return 0; fi
    done
    return 1
}

# objdump -t on an archive: "member.o:     file format ..." before each
# member's table; a data object's line has the flag O, then its section,
# size and name (".hidden NAME" for hidden visibility).
listing=$(LC_ALL=C objdump -t "$lib" | awk '
    / file format / { obj = $1; sub(/:$/, "", obj); next }
    /^[0-9a-f]+ / {
        # "ADDRESS FLAGS SECTION<tab>SIZE NAME": seven flag characters,
        # O for a data object, d for a section symbol, F for a function;
        # thread-local variables have no O, so their sections name them
        flags = substr($0, length($1) + 2, 7)
        split($0, half, "\t"); n = split(half[1], f, " "); sec = f[n]
        name = $NF
        if (flags ~ /[dfF]/ || !(flags ~ /O/ || sec ~ /^\.t(data|bss)($|\.)/))
            next
        if (sec ~ /^\.(data|bss|tdata|tbss)($|\.)/ && sec !~ /^\.data\.rel\.ro($|\.)/ || sec == "*COM*")
            print obj, sec, name
    }')
if [[ $? -ne 0 ]]; then
    echo "FAIL objdump -t $lib failed"
    echo "0 passed, 1 failed"
    exit 1
fi

nobj=$(LC_ALL=C objdump -t "$lib" | grep -c ' file format ')
while read -r obj sec name; do
    [[ -n ${obj:-} ]] || continue
    if is_allowed "$obj" "$name"; then
        echo "ok $(source_of "$obj") ($obj): $name in $sec (allowed)"
        pass=$((pass + 1))
    else
        echo "FAIL $(source_of "$obj") ($obj): $name is writable ($sec): make it const, or a field of an object the caller owns"
        fail=$((fail + 1))
    fi
done <<<"$listing"
# one check per object with nothing writable in it
offenders=$(awk '{print $1}' <<<"$listing" | sort -u | grep -c .)
pass=$((pass + nobj - offenders))
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]

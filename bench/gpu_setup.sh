# gpu_setup.sh: sourced by gpu.sh, gpu_sweep.sh and gpu_profile.sh (run from the repo root) on the
# device machine: unpacks the carried .debs the image lacks (scripts/device-debs; a package already
# installed there is left alone), links the -dev names of our libraries, and sets GEN to the CMake
# generator (Ninja where the image has it).
for f in .debs/*.deb; do
    [ -e "$f" ] || continue
    pkg=$(basename "$f" | cut -d_ -f1)
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && continue
    dpkg -x "$f" /
done
for l in /usr/lib/x86_64-linux-gnu/lib{jansson,cmocka,pcre2-8,utf8proc}.so; do
    [ -e "$l" ] || ln -sf "$(ls "$l".[0-9]* 2>/dev/null | head -1)" "$l"
done
ldconfig
GEN=""
command -v ninja > /dev/null && GEN="-G Ninja"

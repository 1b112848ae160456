#!/usr/bin/env bash
# Packs what bench/gpu/check.sh needs on a bare GPU machine (CUDA, CMake, g++ and PyTorch, but no Node, no
# network, and at most 64 MiB carried beside the repo) into .gpu-carry/, which git ignores:
#   node.xz              this machine's Node binary (~24 MB compressed)
#   node_modules.tar.xz  the runtime dependencies, tsx and uvu with what they need (webgpu: linux-x64 only)
#   build.tar.xz         build/Release/kiln.node and kiln_cuda.so (every CUDA kernel, sm_80 and sm_90)
#   gl/*.deb             the Vulkan/EGL loaders from Debian (Dawn needs libvulkan; the GPU image has none)
# Run it here after `npm ci` and `npm run build:native -- --cuda`, then on the GPU machine, carrying
# .gpu-carry: `bash bench/gpu/check.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu-carry
for f in build/Release/kiln.node build/Release/kiln_cuda.so; do
  [ -f "$f" ] || { echo "pack: $f missing: run npm run build:native -- --cuda first" >&2; exit 1; }
done
[ -d node_modules/tsx ] || { echo "pack: node_modules missing: run npm ci first" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/gl"

# the packages to carry: the dependency closure of package.json's dependencies and optionalDependencies, tsx
# and uvu, resolved the way Node does (a nested node_modules first, then each parent's)
node --input-type=module - > "$out/packages.txt" <<'EOF'
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
const root = JSON.parse(readFileSync('package.json', 'utf8'));
const seen = new Set();
const find = (name, from) => {
  for (let d = from; ; d = dirname(dirname(d))) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (d === '.' || d === dirname(dirname(d))) return null;
  }
};
const visit = (dir) => {
  if (seen.has(dir)) return;
  seen.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  for (const [name, optional] of [
    ...Object.keys(pkg.dependencies ?? {}).map((n) => [n, false]),
    ...Object.keys(pkg.optionalDependencies ?? {}).map((n) => [n, true]),
  ]) {
    const p = find(name, dir);
    if (p) visit(p);
    else if (!optional) throw new Error(`${name} (needed by ${dir}) is not installed`);
  }
};
for (const name of [
  ...Object.keys(root.dependencies ?? {}),
  ...Object.keys(root.optionalDependencies ?? {}),
  'tsx',
  'uvu',
]) {
  const p = find(name, '.');
  if (!p) throw new Error(`${name} is not installed`);
  visit(p);
}
// a package nested inside another one travels with it
const dirs = [...seen].sort();
console.log(dirs.filter((d) => !dirs.some((o) => o !== d && d.startsWith(o + '/'))).join('\n'));
EOF
# node_modules/.bin links tsx and uvu's commands; webgpu ships Dawn for five platforms, this needs one
tar -cf - --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' -T "$out/packages.txt" | xz -T0 -6 > "$out/node_modules.tar.xz"
xz -T0 -9 -c "$(command -v node)" > "$out/node.xz"
tar -cf - build/Release/kiln.node build/Release/kiln_cuda.so | xz -T0 -6 > "$out/build.tar.xz"
# amd64 packages whatever this machine is, from apt's own lists in a scratch folder (as root, as apt needs)
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/kiln-gpu-apt"
mkdir -p /tmp/kiln-gpu-apt/partial
# shellcheck disable=SC2086
apt-get $o update -qq
# shellcheck disable=SC2086
(cd "$out/gl" && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -ab "$out" | sort -n | tail -8
total=$(du -sb "$out" | cut -f1)
echo "pack: $out holds $((total >> 20)) MiB (the limit is 64 MiB with the repo)"
[ "$total" -lt $((56 << 20)) ] || { echo "pack: too large to carry" >&2; exit 1; }

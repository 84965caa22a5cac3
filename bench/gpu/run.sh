#!/usr/bin/env bash
# One call on a lent GPU machine (see README.md):  bash bench/gpu/run.sh [.carry]
# Needs: the carry folder staged by prepare.sh, an NVIDIA driver, python3 with
# PyTorch and its nvidia-cudnn / nvidia-cublas wheels. Writes every log to
# $OUT (default /tmp/nst-gpu-out) and prints a short table last.
# Exits non-zero when the kernel self-test or the GPU tests fail, or when the
# GPU tests skip (on a GPU host a skip means the engine could not start).
# Steps (each under its own timeout; the whole run fits in 10 minutes):
#   1. the kernels' self-test against CPU references       (kernel_test)
#   2. the GPU tests: cuda vs cpu parity, Adam, batch      (cuda-tests.mjs)
#   3. nst cuda: ms/iter and peak GPU memory, 512x512 x1 and 256x256 x8
#   4. PyTorch eager (torch_ref.py), same two configurations
set -u -o pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CARRY=$(cd "${1:-.carry}" && pwd)
G="$CARRY/gpu"
OUT=${OUT:-/tmp/nst-gpu-out}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

log() { echo "== [$(date +%T)] $*" | tee -a "$OUT/run.log"; }
note() { echo "$*" | tee -a "$SUMMARY"; }

log "machine"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$OUT/run.log"

log "node, libraries, cuDNN and cuBLAS from the PyTorch wheels"
xz -dc "$CARRY/node.xz" > "$WORK/node" && chmod +x "$WORK/node"
NODE="$WORK/node"
"$NODE" --version | tee -a "$OUT/run.log"
mkdir -p "$WORK/libs" && tar -C "$WORK/libs" -xJf "$G/libs.tar.xz"
eval "$(python3 - <<'EOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
def find(*patterns):
    for root in roots:
        for pattern in patterns:
            hits = sorted(glob.glob(os.path.join(root, 'nvidia', '**', pattern), recursive=True))
            if hits:
                return os.path.dirname(hits[0])
    return ''
print(f"CUDNN_DIR='{find('libcudnn.so.9')}'")
print(f"CUBLAS_DIR='{find('libcublas.so.13', 'libcublas.so.12')}'")
print(f"NVRTC_DIR='{find('libnvrtc.so.13', 'libnvrtc.so.12')}'")
EOF
)"
export NST_CUDNN_PATH="$CUDNN_DIR" NST_CUBLAS_PATH="$CUBLAS_DIR"
# The wheel folders on the loader path too: cuDNN 9's shim and cuBLAS load
# their sub-libraries (and NVRTC) by soname.
export LD_LIBRARY_PATH="$WORK/libs:$CUDNN_DIR:$CUBLAS_DIR:$NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NST_NATIVE_ADDON="$G/nst_native.node"
echo "NST_CUDNN_PATH=$NST_CUDNN_PATH NST_CUBLAS_PATH=$NST_CUBLAS_PATH NVRTC=$NVRTC_DIR" | tee -a "$OUT/run.log"
ldd "$NST_NATIVE_ADDON" > "$OUT/ldd.txt" 2>&1
grep "not found" "$OUT/ldd.txt" && note "WARNING: the addon misses libraries (ldd.txt)"

log "1/4 kernel self-test"
status=0
timeout 60 "$G/kernel_test" 2>&1 | tee "$OUT/kernel_test.log"
rc=$?
note "kernel self-test: exit $rc (0 = every kernel matches its CPU reference)"
[ "$rc" -eq 0 ] || status=1

log "2/4 GPU tests (cuda vs cpu parity)"
timeout 270 "$NODE" "$G/cuda-tests.mjs" 2>&1 | tee "$OUT/cuda-tests.log"
rc=$?
note "GPU tests: exit $rc ($(grep '^tests:' "$OUT/cuda-tests.log" | tail -1))"
[ "$rc" -eq 0 ] || status=1
if grep "cuda parity tests skipped" "$OUT/cuda-tests.log" | sed 's/^/  SKIPPED: /' | tee -a "$SUMMARY" | grep -q .; then
  note "FAIL: the GPU tests skipped on a GPU host"
  status=1
fi

# Runs "$@" with nvidia-smi sampling device memory every 100 ms; records the
# peak above the idle baseline (the process's context + allocations).
measure() {
  local name=$1 limit=$2
  shift 2
  local base
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/mem-$name.txt" 2>/dev/null &
  local sampler=$!
  timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  local rc=$?
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  local peak
  peak=$(sort -n "$OUT/mem-$name.txt" | tail -1)
  echo "{\"name\": \"$name\", \"rc\": $rc, \"base_mib\": ${base:-0}, \"peak_mib\": ${peak:-0}}" > "$OUT/mem-$name.json"
  cat "$OUT/$name.json" "$OUT/$name.err" | tee -a "$OUT/run.log"
}

log "3/4 nst cuda benchmark"
NST_CUDA_VERBOSE=1 NST_CUDA_PROFILE=1 measure nst-512x1 60 "$NODE" "$G/bench.mjs" --size 512 --batch 1 --steps 500
NST_CUDA_VERBOSE=1 measure nst-256x8 60 "$NODE" "$G/bench.mjs" --size 256 --batch 8 --steps 150
# Experimental: cuDNN's fused conv+bias+ReLU (forces IMPLICIT_PRECOMP_GEMM).
NST_CUDA_VERBOSE=1 NST_CUDA_FUSED_CONV=1 measure nst-512x1-fused 60 "$NODE" "$G/bench.mjs" --size 512 --batch 1 --steps 500

log "4/4 PyTorch eager benchmark"
measure torch-512x1 90 python3 "$REPO/bench/gpu/torch_ref.py" --size 512 --batch 1 --steps 100
measure torch-256x8 90 python3 "$REPO/bench/gpu/torch_ref.py" --size 256 --batch 8 --steps 40

log "summary"
cat "$SUMMARY"
log "table"
python3 - "$OUT" <<'EOF' | tee "$OUT/table.txt"
import json, os, re, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name + '.json')) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None
def allocated(name):  # the engine's own count (NST_CUDA_VERBOSE line)
    try:
        text = open(os.path.join(out, name + '.err')).read()
        m = re.search(r'session .*: ([\d.]+ [MG]iB) allocated \(workspace ([\d.]+ [MG]iB)\)', text)
        return f'{m.group(1)} + ws {m.group(2)}' if m else '?'
    except Exception:
        return '?'
rows = []
for cfg in ['512x1', '256x8']:
    ours, ref = load('nst-' + cfg), load('torch-' + cfg)
    mo, mr = load('mem-nst-' + cfg), load('mem-torch-' + cfg)
    ms = lambda r: f"{r['ms_per_iter']:.3f}" if r else 'failed'
    speed = f"{ref['ms_per_iter'] / ours['ms_per_iter']:.2f}x" if ours and ref else '-'
    peak = lambda m: f"{m['peak_mib'] - m['base_mib']}" if m else '?'
    torch_alloc = f"{ref['peak_allocated_mib']:.0f}" if ref else '?'
    rows.append((cfg, ms(ours), ms(ref), speed, peak(mo), allocated('nst-' + cfg), peak(mr), torch_alloc))
head = ('config', 'nst ms/iter', 'torch ms/iter', 'speedup', 'nst GPU MiB (smi)', 'nst allocated', 'torch GPU MiB (smi)', 'torch max alloc MiB')
widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
for r in [head] + rows:
    print('  '.join(str(v).ljust(w) for v, w in zip(r, widths)))
fused = load('nst-512x1-fused')
print(f"512x1 with NST_CUDA_FUSED_CONV=1 (experimental): {fused['ms_per_iter']:.3f} ms/iter" if fused else
      "512x1 with NST_CUDA_FUSED_CONV=1 (experimental): failed (nst-512x1-fused.err)")
ours = load('nst-512x1')
ref = load('torch-512x1')
if ours:
    print(f"targets at 512x512: <= 2 ms/iter: {'yes' if ours['ms_per_iter'] <= 2 else 'NO'}"
          + (f"; >= 1.5x PyTorch eager: {'yes' if ref and ref['ms_per_iter'] >= 1.5 * ours['ms_per_iter'] else 'NO'}" if ref else '')
          + "; <= 1 GB: see the nst columns")
    print(f"nst: {ours['detail']}")
if ref:
    print(f"torch: {ref['detail']}")
EOF
rm -rf "$WORK"
exit "$status"

/**
 * Where the networks run: 'cpu' (the default) or 'cuda' (an NVIDIA GPU through onnxruntime-node's
 * CUDA execution provider), as in transformers.js's `device` option.
 *
 * onnxruntime-node's npm package ships only the CPU binaries; the CUDA provider's libraries
 * (libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so, from the NuGet package
 * Microsoft.ML.OnnxRuntime.Gpu.Linux) are fetched by its install script, which this project skips
 * (README "Installing"). So 'cuda' is checked before any session is created: the platform, then
 * the provider libraries beside the binding; a missing piece is a DeviceError that says how to get
 * it. A session that still fails to start on CUDA (no driver, no CUDA 12 / cuDNN 9 libraries) is
 * turned into a DeviceError by `deviceLoadError`.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';

export const DEVICES = ['cpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];

export function isDevice(v: unknown): v is Device {
  return typeof v === 'string' && (DEVICES as readonly string[]).includes(v);
}

/** The requested device cannot be used; the message says why and what to do. */
export class DeviceError extends Error {
  constructor(readonly device: Device, detail: string) {
    super(`device '${device}': ${detail}`);
    this.name = 'DeviceError';
  }
}

/** The CUDA provider's libraries, as onnxruntime-node's install script puts them beside its binding. */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

/** The onnxruntime-node package this installation loads. */
function ortPackageDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
}

/** onnxruntime-node's folder of native binaries for this platform. */
export function ortBinaryDir(): string {
  return path.join(ortPackageDir(), 'bin', 'napi-v6', process.platform, process.arch);
}

/**
 * The command that fetches the CUDA provider into this installation's onnxruntime-node: its own
 * install script, run directly (so no npm setting or script policy can skip it), told to install
 * the cuda12 files by the environment variable it reads first.
 */
export function cudaInstallCommand(): string {
  return `ONNXRUNTIME_NODE_INSTALL=cuda12 node ${path.join(ortPackageDir(), 'script', 'install.js')}`;
}

const CUDA_NEEDS = 'an NVIDIA GPU with its driver, and the CUDA 12 and cuDNN 9 libraries on the library path (LD_LIBRARY_PATH)';

/** Why CUDA cannot be used here, or null when its provider is installed. */
export function cudaUnavailableReason(binDir: string = ortBinaryDir()): string | null {
  const supported = ort.listSupportedBackends?.().some((b) => b.name === 'cuda') ?? (process.platform === 'linux' && process.arch === 'x64');
  if (!supported) {
    return `onnxruntime-node has no CUDA execution provider on ${process.platform}/${process.arch} (only on Linux x64); use device 'cpu'`;
  }
  const missing = CUDA_PROVIDER_FILES.filter((f) => !fs.existsSync(path.join(binDir, f)));
  if (missing.length > 0) {
    return `onnxruntime-node's CUDA execution provider is not installed (${missing.join(', ')} missing in ${binDir}; ` +
      'osdface installs onnxruntime-node with the download of it skipped). ' +
      `Install it with \`${cudaInstallCommand()}\` (onnxruntime-node's own script; it downloads the ` +
      `Microsoft.ML.OnnxRuntime.Gpu.Linux package from NuGet); CUDA then needs ${CUDA_NEEDS}. Or use device 'cpu'`;
  }
  return null;
}

/**
 * The ONNX Runtime execution providers for `device` ('cuda' falls back to the CPU for the
 * operators CUDA lacks); throws a DeviceError when the device cannot be used here.
 */
export function executionProvidersFor(device: Device): string[] {
  if (device === 'cpu') return ['cpu'];
  const reason = cudaUnavailableReason();
  if (reason !== null) throw new DeviceError(device, reason);
  return ['cuda', 'cpu'];
}

/**
 * A failure while loading on `device`, as the error to throw: on 'cuda', one that mentions CUDA
 * (the provider did not start) becomes a DeviceError saying what CUDA needs; anything else is
 * returned as it is.
 */
export function deviceLoadError(device: Device, e: unknown): unknown {
  if (device !== 'cuda' || e instanceof DeviceError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (!/cuda|cudnn|cublas|providers_shared|libcu/i.test(msg)) return e;
  return new DeviceError(device, `the CUDA execution provider failed to start (${msg.split('\n')[0]!.trim()}); it needs ${CUDA_NEEDS}. Or use device 'cpu'`);
}

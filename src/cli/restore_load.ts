/**
 * Loading what `osdface restore` needs, for images and videos alike: the model (with the load
 * options of the restore flags) and, for whole photos and videos, the face detector. A failure is
 * logged in words and becomes the command's exit code: 2 for a model directory that cannot be used,
 * 1 for a detector that cannot be loaded.
 */
import { OSDFace } from '../osdface.js';
import { loadDetector, type Detector } from '../face/detectors.js';
import { modelLoadOptions, type RestoreSettings } from './restore_options.js';

export type Loaded = { model: OSDFace; detector: Detector | null } | { exitCode: number };

export async function loadForRestore(
  modelDir: string, settings: RestoreSettings, log: (line: string) => void, opts: { detector: boolean; detectorHint?: string },
): Promise<Loaded> {
  let model: OSDFace;
  try {
    model = await OSDFace.load(modelDir, modelLoadOptions(settings));
  } catch (e) {
    log(e instanceof Error ? e.message : String(e));
    return { exitCode: 2 };
  }
  if (!opts.detector) return { model, detector: null };
  try {
    return { model, detector: await loadDetector(settings.detector, settings.threads !== undefined ? { threads: settings.threads } : {}) };
  } catch (e) {
    await model.dispose();
    log(`cannot load the face detector: ${e instanceof Error ? e.message : String(e)}${opts.detectorHint ?? ''}`);
    return { exitCode: 1 };
  }
}

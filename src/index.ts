/** osdface: OSDFace one-step face restoration on ONNX Runtime. */
export {
  OSDFace, type ModelDtype, type OSDFaceInput, type OSDFaceLoadOptions, type OSDFacePhotoOptions, type OSDFaceRestoreOptions,
  type RestoredImage, type RestoredPhoto,
} from './osdface.js';
export { convertRelease, type ConvertOptions } from './pipeline/convert.js';
export { ModelDirError, type Manifest } from './pipeline/manifest.js';
export { DEVICES, DeviceError, type Device } from './graph/device.js';
export { ImageError, saveImage, type ImageFormat, type ImageInput, type RawPixels, type RgbImage } from './image/io.js';
export {
  DEFAULT_MIN_EYE_DISTANCE, restorePhoto, type BackgroundUpsampler, type FaceStatus, type PhotoFace, type PhotoImage, type RestoreCrops,
  type RestorePhotoOptions, type RestorePhotoResult,
} from './photo/restore_photo.js';
export {
  DEFAULT_DETECTOR, DETECTOR_NAMES, loadDetector, parseDetectorName, type Detector, type DetectorName, type LoadDetectorOptions,
} from './face/detectors.js';
export { RetinaFaceDetector, type RetinaFaceOptions } from './face/retinaface.js';
export { FaceDetector, type Box, type DetectedFace, type DetectOptions, type FaceDetectorOptions, type Landmarks5, type Point } from './face/detector.js';
export { type Affine } from './face/align.js';
export { DEFAULT_VAE_TILING, type VaeTileOptions, type VaeTiling } from './pipeline/tiling.js';

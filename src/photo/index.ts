/** Whole-photo face restoration and the face tools it uses, in one import. */
export {
  DEFAULT_MIN_EYE_DISTANCE, pasteFace, restorePhoto, upscaleBackground,
  type BackgroundUpsampler, type FaceStatus, type PasteOptions, type PhotoFace, type PhotoImage, type RestoreCrops,
  type RestorePhotoOptions, type RestorePhotoResult, type UpscaleBackgroundOptions,
} from './restore_photo.js';
export { buildEsrgan, defaultEsrganPackageDir, EsrganUpscaler, type EsrganScale, type EsrganTileOptions } from './esrgan.js';
export { sideBySide } from './compare.js';
export {
  defaultFaceModelDir, FaceDetector, fivePointsFrom68,
  type Box, type DetectedFace, type DetectOptions, type FaceDetectorOptions, type Landmarks5, type Point,
} from '../face/detector.js';
export {
  DEFAULT_DETECTOR, DETECTOR_NAMES, loadDetector, parseDetectorName, type Detector, type DetectorName, type LoadDetectorOptions,
} from '../face/detectors.js';
export { RetinaFaceDetector, type RetinaFaceOptions } from '../face/retinaface.js';
export {
  affineScale, alignFace, applyAffine, composeAffine, estimateSimilarity, FFHQ_BORDER_FILL, FFHQ_TEMPLATE_512, invertAffine,
  templateFor, warpAffine, warpPixels,
  type Affine, type AlignedFace, type AlignOptions, type EstimateOptions, type SimilarityFit,
} from '../face/align.js';

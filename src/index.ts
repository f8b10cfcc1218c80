/** osdface: OSDFace one-step face restoration on ONNX Runtime. */
export { OSDFace, type ModelDtype, type OSDFaceInput, type OSDFaceLoadOptions, type OSDFaceRestoreOptions, type RestoredImage } from './osdface.js';
export { convertRelease, type ConvertOptions } from './pipeline/convert.js';
export { ModelDirError, type Manifest } from './pipeline/manifest.js';
export { ImageError, type ImageInput, type RawPixels, type RgbImage } from './image/io.js';

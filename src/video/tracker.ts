/**
 * Faces tracked across the frames of a video: each frame's detections are matched to the tracks
 * of the frames before (greedily, best box overlap first; a detection whose box overlaps none
 * enough still joins a track whose box centre is within half a face of its own), so a face keeps
 * its id through the clip. Each track smooths its 5 landmarks in time with one one-euro filter
 * per coordinate, in units of the face's size (so the same settings suit small and large faces).
 * A track not matched for more than `maxMissing` frames is dropped; a face that comes back later
 * starts a new track.
 */
import type { Box, DetectedFace, Landmarks5, Point } from '../face/detector.js';
import { DEFAULT_ONE_EURO, OneEuroFilter, type OneEuroOptions } from './one_euro.js';

export interface TrackerOptions {
  /** Smooth the landmarks in time (default true). */
  smooth?: boolean;
  /** Frames a track may go unmatched before it is dropped (default 5). */
  maxMissing?: number;
  /** Smallest box IoU for a match (default 0.3). */
  minIou?: number;
  /** The filter's settings, with the value in face sizes (default DEFAULT_FACE_ONE_EURO). */
  oneEuro?: OneEuroOptions;
}

/**
 * Settings for landmarks measured in face sizes (the box's longer side): a 1 Hz cutoff at rest,
 * 4 Hz at 0.2 face sizes per second (a slow pan), 9 Hz at 0.5 (a brisk head turn). Chosen with
 * `npm run bench:video -- --tune`: on its slowly panned clip they cut the landmarks' frame-to-frame
 * noise 2.5 times without lag (their distance to the smooth motion stays the raw detections');
 * beta 4 cuts it 3.8 times but lags 1.5 px behind a 30 px/s pan.
 */
export const DEFAULT_FACE_ONE_EURO: OneEuroOptions = { ...DEFAULT_ONE_EURO, minCutoff: 1, beta: 16 };

export interface TrackedFace extends DetectedFace {
  /** The track's id: the same face keeps it across frames. */
  id: number;
  /** The detector's landmarks; `landmarks` holds the smoothed ones (the same when smoothing is off). */
  raw: Landmarks5;
}

interface Track {
  id: number;
  box: Box;
  /** Face size the landmarks are filtered in (the first box's longer side). */
  scale: number;
  filters: OneEuroFilter[];
  missing: number;
}

export function iou(a: Box, b: Box): number {
  const x0 = Math.max(a.x, b.x);
  const y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.width, b.x + b.width);
  const y1 = Math.min(a.y + a.height, b.y + b.height);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

function centreDistance(a: Box, b: Box): number {
  return Math.hypot(a.x + a.width / 2 - (b.x + b.width / 2), a.y + a.height / 2 - (b.y + b.height / 2));
}

export class FaceTracker {
  private tracks: Track[] = [];
  private nextId = 0;
  private readonly smooth: boolean;
  private readonly maxMissing: number;
  private readonly minIou: number;
  private readonly oneEuro: OneEuroOptions;

  constructor(opts: TrackerOptions = {}) {
    this.smooth = opts.smooth ?? true;
    this.maxMissing = opts.maxMissing ?? 5;
    this.minIou = opts.minIou ?? 0.3;
    this.oneEuro = opts.oneEuro ?? DEFAULT_FACE_ONE_EURO;
  }

  /** Faces that got an id so far. */
  get trackCount(): number {
    return this.nextId;
  }

  /** Matches this frame's detections (taken at time `t`, seconds) to the tracks; same order as `faces`. */
  update(faces: readonly DetectedFace[], t: number): TrackedFace[] {
    const pairs: { track: number; face: number; iou: number; dist: number }[] = [];
    this.tracks.forEach((tr, i) => faces.forEach((f, j) => {
      const o = iou(tr.box, f.box);
      const dist = centreDistance(tr.box, f.box) / Math.max(tr.box.width, tr.box.height, 1);
      if (o >= this.minIou || dist <= 0.5) pairs.push({ track: i, face: j, iou: o, dist });
    }));
    pairs.sort((p, q) => q.iou - p.iou || p.dist - q.dist);
    const trackOf = new Array<Track | undefined>(faces.length);
    const used = new Set<number>();
    for (const p of pairs) {
      if (used.has(p.track) || trackOf[p.face]) continue;
      used.add(p.track);
      trackOf[p.face] = this.tracks[p.track];
    }
    const out = faces.map((f, j) => {
      let tr = trackOf[j];
      if (!tr) {
        tr = { id: this.nextId++, box: f.box, scale: Math.max(f.box.width, f.box.height, 1), filters: Array.from({ length: 10 }, () => new OneEuroFilter(this.oneEuro)), missing: 0 };
        this.tracks.push(tr);
        trackOf[j] = tr;
      }
      tr.box = f.box;
      tr.missing = 0;
      const track = tr;
      const landmarks = this.smooth
        ? (f.landmarks.map((p, k) => [0, 1].map((c) => track.filters[2 * k + c]!.filter(p[c]! / track.scale, t) * track.scale) as Point) as Landmarks5)
        : f.landmarks;
      return { ...f, id: tr.id, raw: f.landmarks, landmarks };
    });
    const matched = new Set(trackOf);
    for (const tr of this.tracks) if (!matched.has(tr)) tr.missing++;
    this.tracks = this.tracks.filter((tr) => tr.missing <= this.maxMissing);
    return out;
  }
}

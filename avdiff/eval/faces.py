"""Per-frame face and mouth boxes of a talking-head video, from detectors that ship with the installed packages.

Faces come from dlib's HOG frontal-face detector (built into dlib, no model file) and mouths from dlib's
68-point landmark predictor (`shape_predictor_68_face_landmarks.dat` of the `face-recognition-models` package),
so lip-sync metrics can read a folder of talking-head videos without a hand-given crop box.

Pipeline, per searched frame (every `detect_every`-th frame and the last one):
  1. grey, resized so its short side is `detect_size` pixels (down for HD video, up for small clips: HOG finds
     faces of >= ~80 px at that scale, i.e. faces of >= 80 / detect_size of the short side, 25% by default);
  2. HOG detection (all faces scoring above `threshold`), then the 68 landmarks of each face;
  3. mouth box from the 20 mouth landmarks (48-67): centred on their bounding box, `mouth_scale` = (1.0, 1.5)
     mouth widths (corner 48 to corner 54) high and wide. Lips open to at most ~0.8 mouth width, so the box holds
     the open mouth and a quarter mouth width of cheek each side at a size that does not change with the opening
     (a box that grows as the mouth opens would feed the speech rhythm into the crop). It is tighter than
     SyncNet's lower-half-of-the-face crop, which can be read off `FaceTrack.face_boxes`.
Over the clip, detections are linked into tracks (IoU >= 0.3 with the track's previous face box); the track with
the largest sum of face sizes (sqrt of area) is kept: the largest face seen most often. Its boxes are median
filtered over `smooth_frames` frames, linearly interpolated over frames not searched or missed, and held before
its first and after its last detection.

Boxes are (y0, x0, y1, x1) in pixels of the input frames, as everywhere in avdiff.eval: per-frame boxes are float
(pixel i spans [i, i + 1)), the one-per-clip boxes are int (end-exclusive), all clipped to the frame.

Measured on the synthetic `talking` clips (tests/test_eval_faces.py, 8 seeds): mean IoU of the clip mouth box
against the generator's known mouth box 0.78 at 64x64 and 0.67 at 256x256 (lowest clip 0.63), per-frame mouth
centres within ~2 px at 256x256. Cost on one shared CPU core, default settings (every 2nd frame searched): ~7 ms
per frame at 256x256, ~13 ms per frame at 1280x720, plus ~0.6 s once per process to load the landmark model.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os

import numpy as np

MOUTH_POINTS = slice(48, 68)  # The 68-point scheme's outer (48-59) and inner (60-67) lip contours.
_MOUTH_CORNERS = (48, 54)
_LINK_IOU = 0.3  # A detection continues a track when its face box overlaps the track's last one this much.
# The clip boxes hold each side of the per-frame boxes in 90% of frames: the mouth over a moving head, robust to a
# few bad frames.
_CLIP_PERCENTILE = 10.0


class NoFace(ValueError):
  """No face (or too few frames with one) in a clip; str() is the reason, e.g. 'no face detected (0/63 ...)'."""


@dataclasses.dataclass(frozen=True)
class FaceTrack:
  """The kept face over a clip of T frames of size H x W.

  face_boxes, mouth_boxes: float32 [T, 4] (y0, x0, y1, x1) pixels, smoothed and interpolated; NaN if not found.
  detected: bool [T], frames where the kept face was detected (only searched frames can be True).
  num_searched: frames the detector ran on.
  found: whether the face was detected in at least `min_detected` of the searched frames.
  reason: what was found, e.g. 'face in 30/32 searched frames' or 'no face detected (0/63 searched frames)'.
  frame_size: (H, W) pixels.
  """
  face_boxes: np.ndarray
  mouth_boxes: np.ndarray
  detected: np.ndarray
  num_searched: int
  found: bool
  reason: str
  frame_size: tuple[int, int]

  def clip_mouth_box(self) -> tuple[int, int, int, int]:
    """One mouth box for the clip (int pixels, end-exclusive), for metrics that take one box per clip.

    Raises:
      NoFace: if no face was found.
    """
    return self._clip_box(self.mouth_boxes)

  def clip_face_box(self) -> tuple[int, int, int, int]:
    """One face box for the clip (int pixels, end-exclusive). Raises NoFace if no face was found."""
    return self._clip_box(self.face_boxes)

  def _clip_box(self, boxes: np.ndarray) -> tuple[int, int, int, int]:
    if not self.found:
      raise NoFace(self.reason)
    low = np.percentile(boxes[:, :2], _CLIP_PERCENTILE, axis=0)
    high = np.percentile(boxes[:, 2:], 100.0 - _CLIP_PERCENTILE, axis=0)
    h, w = self.frame_size
    y0, x0 = np.floor(low).astype(int)
    y1, x1 = np.ceil(high).astype(int)
    return (max(0, int(y0)), max(0, int(x0)), min(h, int(y1)), min(w, int(x1)))


def landmark_model_path() -> str:
  """Path of `shape_predictor_68_face_landmarks.dat` in the installed `face_recognition_models` package.

  Found without importing the package: its __init__ needs pkg_resources (setuptools), which is not installed.
  """
  spec = importlib.util.find_spec('face_recognition_models')
  if spec is None or not spec.submodule_search_locations:
    raise ImportError('face_recognition_models is not installed (pip install face-recognition-models==0.3.0)')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'models', 'shape_predictor_68_face_landmarks.dat')
  if not os.path.exists(path):
    raise FileNotFoundError(f'68-point landmark model missing: {path}')
  return path


@functools.lru_cache(maxsize=None)
def _models():
  """(HOG face detector, 68-point shape predictor), loaded once per process (the predictor file is ~100 MB)."""
  import dlib  # pylint: disable=g-import-not-at-top  # Heavy; only evaluation on files needs it.
  return dlib.get_frontal_face_detector(), dlib.shape_predictor(landmark_model_path())


@dataclasses.dataclass
class _Detection:
  frame: int
  face: np.ndarray  # float64 [4] (y0, x0, y1, x1), input-frame pixels.
  mouth: np.ndarray  # float64 [4].

  @property
  def size(self) -> float:
    return float(np.sqrt(max(0.0, (self.face[2] - self.face[0]) * (self.face[3] - self.face[1]))))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  """IoU of two (y0, x0, y1, x1) boxes."""
  inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return float(inter / union) if union > 0 else 0.0


class FaceTracker:
  """Finds the main face and its mouth in a video fed in order, a frame or a chunk at a time.

  Only the detections of searched frames (and one frame, the latest) are kept, so a decoder can stream a file
  through `update` and read the smoothed per-frame boxes from `result` at the end. `detect_faces` is the
  whole-array form.
  """

  def __init__(self, detect_size: int = 320, detect_every: int = 2, threshold: float = -0.3,
               smooth_frames: int = 5, min_detected: float = 0.5, mouth_scale: tuple[float, float] = (1.0, 1.5)):
    """Settings.

    Args:
      detect_size: short side (pixels) frames are resized to for detection and landmarks. HOG finds faces of
        >= ~80 px there, so faces smaller than 80 / detect_size of the short side are missed; 320 finds 64 px faces
        in 256x256 clips and 180 px faces in 720p video, at ~14 and ~22 ms per searched frame. Raise it for wide
        shots (cost grows with its square).
      detect_every: search every k-th frame (and the last); boxes in between are interpolated. 2 halves the cost;
        heads move little in 2 frames (80 ms at 25 fps).
      threshold: HOG score threshold (dlib's own default is 0). Slightly lower, as only one consistent track is
        kept: isolated false detections form tracks of their own and are dropped. On 16 synthetic talking clips
        the worst was detected in 45% of frames at 0 and 82% at -0.3, with no detection in 16 bouncing-ball clips.
      smooth_frames: width (frames) of the median filter over the kept track's detections; 1 = none.
      min_detected: fraction of searched frames the kept face must be detected in for `found`; below it the
        boxes would be mostly interpolation.
      mouth_scale: mouth box (height, width) in mouth widths; see the module docstring.
    """
    if detect_size < 80 or detect_every < 1 or smooth_frames < 1 or not 0.0 < min_detected <= 1.0:
      raise ValueError(f'bad FaceTracker settings: detect_size={detect_size} (>= 80), detect_every={detect_every} '
                       f'(>= 1), smooth_frames={smooth_frames} (>= 1), min_detected={min_detected} (in (0, 1])')
    self.detect_size = int(detect_size)
    self.detect_every = int(detect_every)
    self.threshold = float(threshold)
    self.smooth_frames = int(smooth_frames)
    self.min_detected = float(min_detected)
    self.mouth_scale = tuple(float(s) for s in mouth_scale)
    self._detections: list[list[_Detection]] = []  # Per searched frame, all faces found there.
    self._searched: list[int] = []
    self._num_frames = 0
    self._frame_size: tuple[int, int] | None = None
    self._last: np.ndarray | None = None  # The latest frame if it was not searched: the clip's end is searched.

  def update(self, frames: np.ndarray) -> None:
    """Feeds the next frames: uint8 [H, W, 3] (one frame) or [N, H, W, 3] (a chunk), RGB."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
      frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f'expected uint8 [N, H, W, 3] or [H, W, 3] frames, got {frames.dtype} {frames.shape}')
    if self._frame_size is None:
      self._frame_size = frames.shape[1:3]
    elif frames.shape[1:3] != self._frame_size:
      raise ValueError(f'frame size changed from {self._frame_size} to {frames.shape[1:3]}')
    for frame in frames:
      index = self._num_frames
      self._num_frames += 1
      if index % self.detect_every == 0:
        self._search(index, frame)
        self._last = None
      else:
        self._last = frame.copy()  # Copied: a decoder may reuse its buffer.

  def result(self) -> FaceTrack:
    """The kept face's smoothed per-frame boxes over all frames fed so far."""
    if self._last is not None:
      self._search(self._num_frames - 1, self._last)
      self._last = None
    t = self._num_frames
    h, w = self._frame_size or (0, 0)
    searched = len(self._searched)
    track = self._main_track()
    detected = np.zeros(t, bool)
    detected[[d.frame for d in track]] = True
    if not track:
      reason = f'no face detected (0/{searched} searched frames)' if t else 'no frames'
    else:
      reason = f'face in {len(track)}/{searched} searched frames'
    found = bool(track) and len(track) >= self.min_detected * searched
    if track and not found:
      reason += f', fewer than the {self.min_detected:.0%} required'
    if not found:
      nan = np.full((t, 4), np.nan, np.float32)
      return FaceTrack(nan, nan.copy(), detected, searched, False, reason, (h, w))
    limits = np.asarray([h, w, h, w], np.float64)
    boxes = []
    for key in ('face', 'mouth'):
      frames = np.asarray([d.frame for d in track])
      raw = np.stack([getattr(d, key) for d in track])
      smooth = self._median(frames, raw)
      full = np.stack([np.interp(np.arange(t), frames, smooth[:, i]) for i in range(4)], axis=1)
      boxes.append(np.clip(full, 0.0, limits).astype(np.float32))
    return FaceTrack(boxes[0], boxes[1], detected, searched, True, reason, (h, w))

  # --------------------------------------------------------------------------- internals

  def _search(self, index: int, frame: np.ndarray) -> None:
    """Detects every face of one frame and its mouth landmarks; records them under frame `index`."""
    import cv2  # pylint: disable=g-import-not-at-top
    detector, predictor = _models()
    h, w = frame.shape[:2]
    scale = self.detect_size / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 order: (width, height).
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sy, sx = size[1] / h, size[0] / w  # Exact per-axis scales after rounding the resized size.
    rects, _, _ = detector.run(grey, 0, self.threshold)
    found = []
    for rect in rects:
      # dlib rectangles are inclusive pixel indices; landmarks are pixel centres. Both to edge coordinates.
      face = np.asarray([rect.top() / sy, rect.left() / sx, (rect.bottom() + 1) / sy, (rect.right() + 1) / sx])
      shape = predictor(grey, rect)
      points = np.asarray([[shape.part(i).y, shape.part(i).x] for i in range(68)], np.float64)
      points = (points + 0.5) / np.asarray([sy, sx])
      found.append(_Detection(index, face, self._mouth_box(points)))
    self._detections.append(found)
    self._searched.append(index)

  def _mouth_box(self, points: np.ndarray) -> np.ndarray:
    """Mouth box (y0, x0, y1, x1) from 68 landmarks float [68, 2] (y, x): see the module docstring."""
    mouth = points[MOUTH_POINTS]
    centre = 0.5 * (mouth.min(0) + mouth.max(0))
    width = np.linalg.norm(points[_MOUTH_CORNERS[1]] - points[_MOUTH_CORNERS[0]])
    half = 0.5 * width * np.asarray(self.mouth_scale)
    return np.concatenate([centre - half, centre + half])

  def _main_track(self) -> list[_Detection]:
    """Links detections frame to frame by face-box IoU; returns the track with the largest sum of face sizes."""
    tracks: list[list[_Detection]] = []
    for found in self._detections:
      taken = set()
      # Larger faces claim their track first.
      for det in sorted(found, key=lambda d: -d.size):
        scores = [(_iou(det.face, tr[-1].face), i) for i, tr in enumerate(tracks) if i not in taken]
        best = max(scores, default=(0.0, -1))
        if best[0] >= _LINK_IOU:
          tracks[best[1]].append(det)
          taken.add(best[1])
        else:
          tracks.append([det])
          taken.add(len(tracks) - 1)
    return max(tracks, key=lambda tr: sum(d.size for d in tr), default=[])

  def _median(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Median of each coordinate over the detections within smooth_frames // 2 frames: float [N, 4].

    The window shrinks symmetrically at the track's ends: a one-sided window would lag a moving head there.
    """
    half = np.minimum(self.smooth_frames // 2, np.minimum(frames - frames[0], frames[-1] - frames))
    return np.stack([np.median(boxes[np.abs(frames - f) <= h], axis=0) for f, h in zip(frames, half)])


def detect_faces(video: np.ndarray, **settings) -> FaceTrack:
  """The main face and mouth boxes of every frame of uint8 [T, H, W, 3] RGB `video`.

  Args:
    video: uint8 [T, H, W, 3].
    **settings: FaceTracker settings (detect_size, detect_every, threshold, smooth_frames, min_detected,
      mouth_scale).
  Returns:
    FaceTrack; `found` False (with `reason`) when there is no face, and its clip boxes then raise NoFace.
  """
  tracker = FaceTracker(**settings)
  tracker.update(video)
  return tracker.result()

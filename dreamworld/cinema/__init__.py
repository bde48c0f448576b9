"""Cinema: animations and videos, frame by frame, through any backend's job interface.

planning.py (every frame decided before any is made), render.py (the frames, then the videos), runs.py (run
folders and their settings file), preview.py (the motion without diffusion), schedules.py and
expressions.py (numbers per frame), transforms.py (camera moves, colour coherence), video.py (mp4/GIF).

A run is planned first: every schedule is evaluated for every frame and checked against its
field's range, so a malformed schedule is reported before anything is written. Then, per frame:

- 2d / 3d: frame 0 is txt2img (or img2img of init_image); each later frame takes the previous
  frame (or, with reuse_init, init_image) moved by the motion, matches its colours to frame 0,
  adjusts contrast, adds noise and runs img2img on it at that frame's strength. With cadence N
  only every Nth frame (and the last) is diffused; the frames between are the two diffused
  frames around them, each moved to that frame, cross-faded.
- dream: a latent walk. Every frame is txt2img; its initial noise is the spherical interpolation
  between the noise of the anchor seeds, and its text embedding the linear interpolation between
  the keyframe prompts. Anchor frames are plain generations at their seed and prompt.
- video: every Nth frame of the input video, colour-matched to frame 0, runs through img2img.

Frames are saved as `<run>/frame_NNNNN.png` (with metadata naming the run and frame), beside
`cinema.json`, the resolved request that re-runs the run; then the mp4 (and GIF) are written.
A frame already in the run folder is loaded instead of made, which is how an interrupted run
resumes: every frame is a function of the settings and the frames before it.
"""

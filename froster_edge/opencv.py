"""OpenCV, loaded once with FFmpeg's and OpenCV's own logging quieted: the project reports bad files
and missing cameras itself, in one line. Import cv2 from here, never directly. See docs/architecture.md.
"""

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402  (after the environment it reads at load)

__all__ = ["cv2"]

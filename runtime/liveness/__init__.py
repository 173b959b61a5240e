"""Presentation-attack detection: is the face in front of the camera a live, 3-D head?

planarity: the 3-D test (a flat or bent instrument moves its landmarks by one homography);
passive: the texture model (MiniFASNet: does the face look like a print or a screen);
challenge: the active mode's random head motions with deadlines; check: the per-session state
machine the verification session feeds with each frame's face.
"""

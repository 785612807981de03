"""Export: the shot bundle (Cycles depth, normal and object-index passes and the camera,
frame by frame, written as the wire's layout), in this Blender or in a background one so
a window never waits on Cycles. Below the session and the takes; above looks."""

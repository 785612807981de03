"""Takes: each run's frames in a folder of their own, shown as an image strip at the
shot's frames; re-shading a range of a take; moving takes shaded before the .blend's first
save beside it; the job record a later Blender reattaches by. Below the session; above
export and looks."""

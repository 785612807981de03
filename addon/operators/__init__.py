"""What a user runs: one Blender operator module per job (Shade and Reattach, Cancel, the
server's Check/Start/Stop, Download Models, a take's settings, Re-shade Frames, Shade
Sequence, looks, references, the character bank), the modal run they share, and the same
jobs from the command line (`blender -c storyshade`, cli.py). Below the interface; above
the session and everything under it."""

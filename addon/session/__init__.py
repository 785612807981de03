"""A shading run, as Blender drives it: the shade session's state machine (check, export,
network, take), a sequence of them over an edit's shots, building a run from the sidebar
or a take, what lives only while Blender runs, and what happens when a file is saved or
loaded. Only the main thread runs this. Below the operators and the command line; above
settings, remote, takes, export and looks."""

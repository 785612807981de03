"""What the user chose: the sidebar's settings saved in the scene (props), the add-on's
preferences, the shipped presets the pickers list, and the one settings JSON a Shade
sends, built from them for the panel and the command line alike. Below the session;
above remote, takes and looks."""
